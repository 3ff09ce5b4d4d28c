"""Mastering rate (Willems, Lahlou & Bengio, arXiv 2008.06456; lcswillems/automatic-curriculum).

Needs a task graph (``task_graph`` in the env preset: ``{task: [tasks it leads to]}``).
Per task c, from its success over the last K finished episodes:

    Mast(c)      = (mean success - m_c) / (M_c - m_c)           (m_c = 0, M_c = 1 here)
    Mast(Anc_c)  = min over all (transitive) ancestors of Mast   (1 without ancestors)
    Mast(Succ_c) = min over direct successors of Mast            (0 without successors)
    naLP(c)      = |LP(c)| / max_c' |LP(c')|,  LP(c) = slope of a least-squares line through
                   the task's last K episode successes ("Linreg" estimator)
    pre_a(c)     = Mast(Anc_c)^p [(1 - g) naLP(c) + g (1 - Mast(c))] (1 - Mast(Succ_c))

A task is learnable once its ancestors are mastered, worth learning while it is not mastered
or still progressing, and no longer needed once its successors are mastered. Then, visiting
tasks from the last in topological order to the first, each task passes d_pred of its
attention on to its predecessors (equally split; so recursively further back) and d_succ to its
direct successors. Sampling probability is proportional to the attention (uniform if all zero).
Defaults are the paper's: K = 10, p = 6, g = 0.5, d_pred = 0.2, d_succ = 0.05.

Choices made here: success rates have known bounds, so m_c = 0 and M_c = 1 (the reference
code learns m_c, M_c from the running K-means, for returns of unknown scale); a task without
predecessors keeps its d_pred share and one without successors its d_succ share (the reference
code subtracts both shares from every task, which lowers roots, leaves and unlinked tasks
relative to linked ones: not only a rescaling); a
task with fewer than 2 finished episodes has LP = 0; ``eps`` (default 0) mixes in uniform.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter

import numpy as np

from mtrl.curriculum.base import Scheduler, TaskStats, check_range, mix_uniform
from mtrl.errors import MtrlError, choices


def parse_graph(graph: Mapping[str, Sequence[str]] | None, task_names: Sequence[str]) -> list[tuple[int, int]]:
    """``{task: [successors]}`` -> edges ``(i, j)``; unknown task names and cycles are refused."""
    if not graph:
        raise MtrlError("curriculum 'mastering-rate' needs a task graph: add `task_graph: {TASK: [NEXT_TASK, ...]}` "
                        "to the env preset (see envs/minigrid-ladder.yaml)")
    index = {n: i for i, n in enumerate(task_names)}
    edges = []
    for src, dsts in graph.items():
        if isinstance(dsts, str):
            dsts = [dsts]
        for name in [src, *dsts]:
            if name not in index:
                raise MtrlError(f"task_graph names task {name!r}, which is not in the task set; "
                                f"valid tasks: {choices(task_names)}")
        edges += [(index[src], index[d]) for d in dsts]
    try:
        list(TopologicalSorter({j: {i for i, jj in edges if jj == j} for j in range(len(task_names))}).static_order())
    except CycleError as exc:
        raise MtrlError(f"task_graph has a cycle through {[task_names[i] for i in exc.args[1]]}") from None
    return edges


class MasteringRate(Scheduler):
    name = "mastering-rate"
    state_attrs = ("hist",)

    def __init__(self, task_names, task_graph=None, window: int = 10, power: float = 6.0,
                 potential: float = 0.5, d_pred: float = 0.2, d_succ: float = 0.05, eps: float = 0.0):
        super().__init__(task_names)
        T = self.num_tasks
        self.edges = parse_graph(task_graph, self.task_names)
        if int(window) < 2:
            raise MtrlError(f"curriculum_args.window must be >= 2, got {window}")
        self.window = int(window)
        self.power = check_range("power", power, 0.0, 1e3)
        self.potential = check_range("potential", potential, 0.0, 1.0)
        self.d_pred = check_range("d_pred", d_pred, 0.0, 1.0)
        self.d_succ = check_range("d_succ", d_succ, 0.0, 1.0)
        self.eps = check_range("eps", eps, 0.0, 1.0)
        self.preds = [[i for i, j in self.edges if j == c] for c in range(T)]
        self.succs = [[j for i, j in self.edges if i == c] for c in range(T)]
        self.ancestors = [self._ancestors(c) for c in range(T)]
        sorter = TopologicalSorter({c: set(self.preds[c]) for c in range(T)})
        self.topo = list(sorter.static_order())
        self.hist: list[deque] = [deque(maxlen=self.window) for _ in range(T)]

    def _ancestors(self, c: int) -> list[int]:
        seen: set[int] = set()
        todo = list(self.preds[c])
        while todo:
            a = todo.pop()
            if a not in seen:
                seen.add(a)
                todo += self.preds[a]
        return sorted(seen)

    def update(self, stats: TaskStats) -> None:
        for t, rows in stats.new.items():
            self.hist[t].extend(float(s) for s in rows[:, 1])

    def mastering(self) -> np.ndarray:
        return np.array([np.mean(h) if h else 0.0 for h in self.hist])

    def learning_progress(self) -> np.ndarray:
        lp = np.zeros(self.num_tasks)
        for t, h in enumerate(self.hist):
            if len(h) >= 2:
                y = np.asarray(h, np.float64)
                x = np.arange(len(y), dtype=np.float64) - (len(y) - 1) / 2
                lp[t] = float(x @ (y - y.mean()) / (x @ x))  # least-squares slope
        lp[np.abs(lp) < 1e-12] = 0.0  # rounding noise must not become "the most progress" after normalising
        return lp

    def attention(self) -> np.ndarray:
        mast = self.mastering()
        alp = np.abs(self.learning_progress())
        nalp = alp / alp.max() if alp.max() > 0 else alp
        anc = np.array([min(mast[a] for a in anc) if anc else 1.0 for anc in self.ancestors])
        succ = np.array([min(mast[s] for s in sc) if sc else 0.0 for sc in self.succs])
        att = anc ** self.power * ((1 - self.potential) * nalp + self.potential * (1 - mast)) * (1 - succ)
        for c in reversed(self.topo):
            if self.preds[c]:
                give = att[c] * self.d_pred
                att[c] -= give
                att[self.preds[c]] += give / len(self.preds[c])
            if self.succs[c]:
                give = att[c] * self.d_succ
                att[c] -= give
                att[self.succs[c]] += give / len(self.succs[c])
        return att

    def weights(self) -> np.ndarray | None:
        att = self.attention()
        p = att / att.sum() if att.sum() > 0 else np.full(self.num_tasks, 1.0 / self.num_tasks)
        return mix_uniform(p, self.eps)

    def log(self) -> dict:
        return {"curriculum/mastering": self.mastering(), "curriculum/attention": self.attention()}
