"""One-line natural-language descriptions of tasks, and a text embedding that needs no download.

CARE (Sodhani et al. 2021, "Multi-Task Reinforcement Learning with Context-based
Representations", ICML) conditions its mixture of encoders on an embedding of each task's
description; the paper embeds Meta-World's task descriptions with a pretrained language model.
mtrl must run offline and fetch nothing at run time, so :func:`embed` is a hashed bag of words
and word bigrams (feature hashing, Weinberger et al. 2009): each token adds +-1 to one of ``dim``
coordinates chosen by a stable hash, and the vector is L2-normalised. Tasks that share words
("press the button ...") get similar embeddings, which is the property CARE relies on; it knows
no synonyms. It is written here rather than taken from scikit-learn's ``HashingVectorizer``:
scikit-learn is not otherwise a dependency and this is ten lines; ``hashlib`` is used because
Python's ``hash`` is salted per process (runners and learner must agree).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from mtrl.errors import MtrlError

#: Meta-World v3 tasks, by name without the version suffix (written from the task's reward and
#: success condition; the wording is ours).
METAWORLD: dict[str, str] = {
    "assembly": "pick up the round nut and place it onto the peg",
    "basketball": "pick up the ball and dunk it into the basket hoop",
    "bin-picking": "pick up the cube from one bin and place it into the other bin",
    "box-close": "pick up the box lid and place it onto the box",
    "button-press-topdown": "press the button down from the top",
    "button-press-topdown-wall": "press the button down from the top with a short wall in front of it",
    "button-press": "push the button forward from the front",
    "button-press-wall": "push the button forward from the front with a short wall in front of it",
    "coffee-button": "push the button on the coffee machine",
    "coffee-pull": "pull the coffee mug away from the coffee machine to a goal position",
    "coffee-push": "push the coffee mug under the coffee machine",
    "dial-turn": "rotate the dial by a full turn",
    "disassemble": "pick the round nut up and off the peg",
    "door-close": "push the open door closed",
    "door-lock": "turn the door lock down to lock the door",
    "door-open": "pull the door open by its handle",
    "door-unlock": "turn the door lock up to unlock the door",
    "hand-insert": "insert the gripper into the hole in the table",
    "drawer-close": "push the open drawer closed",
    "drawer-open": "pull the drawer open by its handle",
    "faucet-open": "rotate the faucet handle counter clockwise to open it",
    "faucet-close": "rotate the faucet handle clockwise to close it",
    "hammer": "pick up the hammer and hit the nail into the wall",
    "handle-press-side": "press the handle down from the side",
    "handle-press": "press the handle down from the front",
    "handle-pull-side": "pull the handle up from the side",
    "handle-pull": "pull the handle up from the front",
    "lever-pull": "pull the lever up",
    "pick-place-wall": "pick up the puck and place it at a goal position behind a wall",
    "pick-out-of-hole": "pick the puck up and out of the hole",
    "pick-place": "pick up the puck and place it at a goal position",
    "plate-slide": "slide the plate forward into the cabinet",
    "plate-slide-side": "slide the plate sideways into the cabinet",
    "plate-slide-back": "slide the plate back out of the cabinet",
    "plate-slide-back-side": "slide the plate sideways back out of the cabinet",
    "peg-insert-side": "pick up the peg and insert it sideways into the hole",
    "peg-unplug-side": "pull the peg sideways out of the hole",
    "soccer": "kick the soccer ball into the goal",
    "stick-push": "grasp the stick and use it to push the thermos to a goal position",
    "stick-pull": "grasp the stick and use it to pull the thermos to a goal position",
    "push": "push the puck to a goal position",
    "push-wall": "push the puck to a goal position behind a wall",
    "push-back": "pull the puck back to a goal position",
    "reach": "reach the gripper to a goal position",
    "reach-wall": "reach the gripper to a goal position behind a wall",
    "shelf-place": "pick up the puck and place it onto the shelf",
    "sweep-into": "sweep the puck into the hole in the table",
    "sweep": "sweep the puck off the edge of the table",
    "window-open": "slide the window open to the side",
    "window-close": "slide the window closed to the side",
}

#: MiniGrid tasks of the registered sets, by mtrl task name (the gymnasium id without
#: ``MiniGrid-`` and ``-v0``).
MINIGRID: dict[str, str] = {
    "Empty-5x5": "go to the green goal square in a small empty room",
    "Empty-Random-6x6": "go to the green goal square in an empty room from a random start",
    "LavaGapS5": "go to the green goal square through the gap in a wall of lava",
    "DoorKey-5x5": "pick up the key, open the locked door and go to the green goal square in a tiny room",
    "DoorKey-6x6": "pick up the key, open the locked door and go to the green goal square in a small room",
    "DoorKey-16x16": "pick up the key, open the locked door and go to the green goal square in a large room",
    "Unlock": "pick up the key and open the locked door",
    "BlockedUnlockPickup": "move the ball blocking the door, pick up the key, open the door and pick up the box",
    "MultiRoom-N2-S4": "open the doors and go through two rooms to the green goal square",
    "MultiRoom-N6": "open the doors and go through six rooms to the green goal square",
    "KeyCorridorS3R1": "pick up the key, open the locked door and pick up the ball behind it",
    "KeyCorridorS3R2": "search two rows of rooms for the key, open the locked door and pick up the ball",
    "UnlockPickup": "pick up the key, open the locked door and pick up the box in the next room",
    "KeyCorridorS3R3": "search the rooms of a corridor for the key, open the locked door and pick up the ball",
}


def describe(task: str) -> str | None:
    """The description of a task name (``reach-v3``, ``DoorKey-5x5``), or None when there is none."""
    if task in MINIGRID:
        return MINIGRID[task]
    return METAWORLD.get(re.sub(r"-v\d+$", "", task))


def descriptions(tasks: Sequence[str]) -> list[str]:
    """Descriptions of ``tasks`` in order; a clear error naming every task that has none."""
    found = {t: describe(t) for t in tasks}
    missing = [t for t, d in found.items() if d is None]
    if missing:
        raise MtrlError(f"these tasks have no description, which this architecture needs: {', '.join(missing)}; "
                        "descriptions exist for the Meta-World tasks and the MiniGrid tasks of the registered sets "
                        "(mtrl/envs/descriptions.py)")
    return [found[t] for t in tasks]


def embed(text: str, dim: int = 64) -> np.ndarray:
    """A unit-norm hashed bag of lower-case words and word bigrams of ``text`` (``[dim]`` float32)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    v = np.zeros(dim, np.float64)
    for tok in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
        h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
        v[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    n = np.linalg.norm(v)
    return (v / n if n > 0 else v).astype(np.float32)
