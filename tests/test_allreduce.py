"""Tests for cnnlib.training.parallel.allreduce: the ring all-reduce, in memory and over pipes."""

import numpy as np
import pytest

from cnnlib.training.parallel import (
    WorkerError,
    chunk_bounds,
    ring_allreduce,
    ring_schedule,
    ring_traffic,
    run_ring_allreduce,
    simulate_ring_allreduce,
)


def _buffers(n, length, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(length).astype(dtype) for _ in range(n)]


@pytest.mark.parametrize("length", [0, 1, 2, 7, 10, 64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_chunk_bounds_match_array_split(length, n):
    b = chunk_bounds(length, n)
    assert b[0] == 0 and b[-1] == length and len(b) == n + 1
    sizes = [len(c) for c in np.array_split(np.arange(length), n)]
    np.testing.assert_array_equal(np.diff(b), sizes)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_schedule_reduces_and_gathers_every_chunk(n):
    steps = ring_schedule(n)
    assert len(steps) == 2 * (n - 1)
    for entry in steps:
        # each rank sends one chunk and receives the chunk its left neighbour sent
        for r in range(n):
            assert entry["recv"][r] == entry["send"][(r - 1) % n]
        assert sorted(entry["send"]) == list(range(n))


@pytest.mark.parametrize("length", [1, 2, 5, 12, 100])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_simulation_equals_sum_on_every_rank(n, length):
    bufs = _buffers(n, length)
    out = simulate_ring_allreduce(bufs)
    np.testing.assert_allclose(out[0], np.sum(bufs, axis=0), rtol=1e-12, atol=1e-12)
    for o in out[1:]:  # every replica ends with the same bits
        np.testing.assert_array_equal(o, out[0])
    mean = simulate_ring_allreduce(bufs, op="mean")
    np.testing.assert_allclose(mean[0], np.mean(bufs, axis=0), rtol=1e-12, atol=1e-12)


def test_simulation_does_not_modify_inputs():
    bufs = _buffers(3, 10)
    copies = [b.copy() for b in bufs]
    simulate_ring_allreduce(bufs)
    for b, c in zip(bufs, copies):
        np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("n,length", [(2, 6), (3, 10), (4, 4), (5, 13), (3, 2)])
def test_every_step_of_the_ring(n, length):
    """After reduce-scatter step s, rank r's chunk (r-s-1)%n holds the sum of the
    s+2 ranks r-s-1 .. r; after all-gather step s, chunk (r-s)%n is complete."""
    bufs = _buffers(n, length, seed=n)
    total = np.sum(bufs, axis=0)
    b = chunk_bounds(length, n)
    _, trace = simulate_ring_allreduce(bufs, record=True)
    for entry in trace:
        s = entry["step"]
        for r in range(n):
            c = entry["recv"][r]
            got = entry["state"][r][b[c]:b[c + 1]]
            if entry["phase"] == "reduce-scatter":
                assert c == (r - s - 1) % n
                ranks = [(r - k) % n for k in range(s + 2)]
                want = np.sum([bufs[q][b[c]:b[c + 1]] for q in ranks], axis=0)
            else:
                assert c == (r - s) % n
                want = total[b[c]:b[c + 1]]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        if entry["phase"] == "reduce-scatter" and s == n - 2:
            for r in range(n):  # rank r owns the reduced chunk r+1
                c = (r + 1) % n
                np.testing.assert_allclose(entry["state"][r][b[c]:b[c + 1]], total[b[c]:b[c + 1]],
                                           rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,length", [(1, 10), (2, 10), (3, 10), (4, 12), (5, 3)])
def test_traffic(n, length):
    sent = ring_traffic(length, n)
    _, trace = simulate_ring_allreduce(_buffers(n, length), record=True)
    np.testing.assert_array_equal(sent, np.sum([e["elements_sent"] for e in trace], axis=0)
                                  if trace else np.zeros(n))
    if length % n == 0:
        assert np.all(sent == 2 * (n - 1) * length // n)


def test_bad_input():
    with pytest.raises(ValueError, match="world_size"):
        chunk_bounds(10, 0)
    with pytest.raises(ValueError, match="length"):
        chunk_bounds(-1, 2)
    with pytest.raises(ValueError, match="world_size"):
        ring_schedule(1.5)
    with pytest.raises(TypeError, match="buffers"):
        simulate_ring_allreduce([])
    with pytest.raises(TypeError, match="buffers\\[1\\]"):
        simulate_ring_allreduce([np.zeros(3), [0, 0, 0]])
    with pytest.raises(ValueError, match="1-d"):
        simulate_ring_allreduce([np.zeros((2, 2))])
    with pytest.raises(TypeError, match="floating"):
        simulate_ring_allreduce([np.zeros(3, dtype=np.int64)])
    with pytest.raises(ValueError, match="must match"):
        simulate_ring_allreduce([np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="op"):
        simulate_ring_allreduce([np.zeros(3)], op="max")
    with pytest.raises(ValueError, match="rank"):
        ring_allreduce(np.zeros(4), 2, 2, None, None)
    with pytest.raises(ValueError, match="buffer"):
        ring_allreduce(np.zeros((2, 2)), 0, 2, None, None)


def test_single_rank_needs_no_connections():
    buf = np.arange(5.0)
    assert ring_allreduce(buf, 0, 1, None, None) is buf
    np.testing.assert_array_equal(buf, np.arange(5.0))


@pytest.mark.parametrize("n,length,dtype", [(1, 5, np.float32), (2, 9, np.float32),
                                            (3, 10, np.float64), (3, 2, np.float64)])
def test_processes_match_simulation_bit_for_bit(n, length, dtype):
    """The ring over pipes between spawned processes (chunks not dividing evenly,
    an empty chunk for length 2 over 3 ranks) gives the simulation's bits."""
    bufs = _buffers(n, length, dtype=dtype, seed=7)
    got = run_ring_allreduce(bufs, timeout=120)
    want = simulate_ring_allreduce(bufs)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, w)


def test_processes_large_buffer_no_deadlock():
    """Chunks far larger than a pipe's buffer: even ranks send first, odd ranks receive first."""
    bufs = _buffers(3, 300_000, dtype=np.float32, seed=3)
    got = run_ring_allreduce(bufs, op="mean", timeout=120)
    np.testing.assert_allclose(got[2], np.mean(bufs, axis=0), rtol=1e-5, atol=1e-6)


def test_mismatched_buffers_rejected_before_any_process_starts():
    with pytest.raises(ValueError, match="must match"):
        run_ring_allreduce([np.zeros(8, np.float32), np.zeros(4, np.float32)])
    assert issubclass(WorkerError, RuntimeError)
