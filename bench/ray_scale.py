"""The Ray executor on a simulated cluster: many fake GPUs on a local Ray, nodes that sleep for a clip's time.

A scene of `--clips` clips in chains of `--chain` (each clip one node that sleeps `--clip-seconds`, two
profiles alternating by chain, so routing by model affinity has work to do), joined by one final node, runs
through `scenekit.engine.ray_executor.RayExecutor` with `--gpus` fake GPUs (one actor each, the real
`GpuWorker` with a sleep operation added). Printed:
  * scheduling overhead per node: from the driver sending it to the driver holding its result, minus the
    seconds it slept (Ray calls, the cache's lock, entry commit and checks), mean / median / p95;
  * makespan against the ideal: max(the critical chain, total work / GPUs);
  * how many nodes each actor ran and how many ran on an actor already holding their profile.

    python bench/ray_scale.py                                  # 64 fake GPUs, 200 clips in chains of 4, 2 s each
    python bench/ray_scale.py --gpus 16 --clips 48 --clip-seconds 0.5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import networkx as nx
import ray

from scenekit.cache import CacheStore
from scenekit.engine.events import SilentEvents
from scenekit.engine.ray_executor import RayExecutor, worker_pool
from scenekit.engine.ray_worker import GpuWorker
from scenekit.graph.compile import RenderGraph
from scenekit.graph.nodes import Node
from scenekit.ops import NodeOutput, RunContext, get_operation, register

SLEEP = "bench.sleep"


def _register_sleep() -> None:
    """The simulated model node: sleeps its clip's seconds in 10 steps, writes a small file."""

    def sleep(node: Node, inputs: dict[str, NodeOutput], ctx: RunContext) -> None:
        seconds = node.params["seconds"]
        for step in range(10):
            time.sleep(seconds / 10)
            ctx.step(step + 1, 10)
        (ctx.workdir / "out.txt").write_text(node.id)

    register(SLEEP, version=1)(sleep)


class SimWorker(GpuWorker):
    """The real GPU worker, with the sleep operation registered in its process."""

    def __init__(self, name: str, gpus_per_clip: int = 1):
        _register_sleep()
        super().__init__(name, gpus_per_clip)


def build_graph(clips: int, chain: int, seconds: float, salt: str) -> RenderGraph:
    """`clips` one-node clips in chains of `chain`, two profiles alternating by chain, then a join node."""
    graph = nx.DiGraph()
    last: list[str] = []
    for index in range(clips):
        chain_id, position = divmod(index, chain)
        previous = f"c{index - 1}/sample" if position else None
        model = f"transformer of profile {'AB'[chain_id % 2]}"
        node = Node(
            f"c{index}/sample",
            SLEEP,
            {"seconds": seconds, "index": index, "salt": salt},
            {"context": previous} if previous else {},
            clip=f"c{index}",
            meta={"model": model},
        )
        graph.add_node(node.id, node=node)
        if previous:
            graph.add_edge(previous, node.id)
        if position == chain - 1 or index == clips - 1:
            last.append(node.id)
    join = Node("join", SLEEP, {"seconds": 0.0, "salt": salt}, {f"in{i}": n for i, n in enumerate(last)}, clip="join")
    graph.add_node(join.id, node=join)
    graph.add_edges_from((n, join.id) for n in last)
    for node_id in nx.topological_sort(graph):
        node = graph.nodes[node_id]["node"]
        node.compute_key(1, {name: graph.nodes[dep]["node"].key for name, dep in node.inputs.items()})
    return RenderGraph(graph, join.id)


class Timing(SilentEvents):
    """When the driver sent each node and when it held its result."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.overhead: dict[str, float] = {}

    def node_started(self, node: Node, position: int, total: int) -> None:
        self.sent[node.id] = time.perf_counter()

    def node_finished(self, node: Node, seconds: float) -> None:
        self.overhead[node.id] = time.perf_counter() - self.sent[node.id] - seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--chain", type=int, default=4, help="clips per chain (1: all independent)")
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--cpus", type=int, default=2, help="logical CPUs given to the local Ray")
    args = parser.parse_args()
    _register_sleep()
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, num_gpus=args.gpus, include_dashboard=False, log_to_driver=False)
    pool = worker_pool(env={"OMP_NUM_THREADS": "1"}, worker=SimWorker)
    print(f"Ray with {args.gpus} fake GPUs and their actors up in {time.perf_counter() - started:.1f}s")
    assert get_operation(SLEEP).version == 1
    with tempfile.TemporaryDirectory() as folder:
        graph = build_graph(args.clips, args.chain, args.clip_seconds, salt=str(time.time()))
        timing = Timing()
        executor = RayExecutor(graph, CacheStore(Path(folder)), timing)
        began = time.perf_counter()
        execution = executor.run(args.clips + 1)
        makespan = time.perf_counter() - began
    chains = -(-args.clips // args.chain)
    critical = min(args.chain, args.clips) * args.clip_seconds
    ideal = max(critical, args.clips * args.clip_seconds / args.gpus)
    overheads = sorted(timing.overhead.values())
    p95 = overheads[int(0.95 * (len(overheads) - 1))]
    print(f"{args.clips} clips ({chains} chains of {args.chain}), {args.clip_seconds:g}s each, on {args.gpus} GPUs")
    print(
        f"overhead per node: mean {statistics.mean(overheads) * 1000:.1f} ms, median "
        f"{statistics.median(overheads) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"
    )
    print(
        f"makespan {makespan:.2f}s, ideal {ideal:.2f}s (critical chain {critical:.2f}s): {makespan / ideal:.3f}x ideal"
    )
    per_worker = Counter(p["worker"] for p in execution.placements.values())
    print(f"nodes per actor: min {min(per_worker.values())}, max {max(per_worker.values())} ({len(per_worker)} used)")
    models = Counter(tuple(sorted(m)) for m in (w.models for w in pool.workers))
    print(f"profiles held per actor at the end: {dict(models)}")
    ray.shutdown()


if __name__ == "__main__":
    main()
