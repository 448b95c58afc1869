"""Regularised evolution and random search: Real et al.'s bit-string toy, the algorithm's
bookkeeping, determinism, and the CNN genomes' mutations."""

import numpy as np
import pytest

from cnnlib.search import evolution as E

BITS = 12


def init(rng):
    return tuple(int(b) for b in rng.integers(0, 2, BITS))


def mutate(ind, rng):
    i = int(rng.integers(BITS))
    return ind[:i] + (1 - ind[i],) + ind[i + 1:]


def fitness(ind, rng):
    return sum(ind) / BITS + 0.01 * rng.standard_normal()


def test_toy_evolution_beats_random_search():
    evo = E.regularized_evolution(init, mutate, fitness, 1000, 100, 10, rng=0)
    rand = E.random_search(init, fitness, 1000, rng=0)
    assert len(evo) == len(rand) == 1000
    best_evo = max(sum(ind) for ind, _ in evo)
    best_rand = max(sum(ind) for ind, _ in rand)
    assert best_evo == BITS > best_rand
    # the population improves: the last 100 children are far better than the first 100 randoms
    assert np.mean([f for _, f in evo[-100:]]) > np.mean([f for _, f in evo[:100]]) + 0.3


def test_parent_is_the_best_of_the_sample_and_the_oldest_dies():
    calls = []

    def mut(ind, rng):
        calls.append(ind)
        return ind + 1

    hist = E.regularized_evolution(lambda rng: 0, mut, lambda ind, rng: float(ind), 8, 3, 3, rng=1)
    assert [ind for ind, _ in hist][:3] == [0, 0, 0]
    # fitness = value; the population after each cycle is the last 3 of the history
    for k, parent in enumerate(calls):
        population = [ind for ind, _ in hist[k:k + 3]]
        assert parent in population
    assert [ind for ind, _ in hist] == sorted(ind for ind, _ in hist)


def test_determinism_and_history_format():
    a = E.regularized_evolution(init, mutate, fitness, 50, 10, 3, rng=5)
    b = E.regularized_evolution(init, mutate, fitness, 50, 10, 3, rng=5)
    assert a == b
    assert all(isinstance(f, float) for _, f in a)
    assert E.random_search(init, fitness, 7, rng=3) == E.random_search(init, fitness, 7, rng=3)


def test_bad_input():
    with pytest.raises(ValueError, match="sample_size"):
        E.regularized_evolution(init, mutate, fitness, 10, 3, 4)
    with pytest.raises(ValueError, match="cycles"):
        E.regularized_evolution(init, mutate, fitness, 2, 3, 2)
    with pytest.raises(TypeError, match="mutate"):
        E.regularized_evolution(init, None, fitness, 10, 3, 2)
    with pytest.raises(TypeError, match="fitness must return"):
        E.random_search(init, lambda ind, rng: "good", 3)
    with pytest.raises(ValueError, match="cycles"):
        E.random_search(init, fitness, 0)


def test_mutations_keep_genomes_valid_and_cover_all_kinds():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        g = E.random_genome(rng, max_layers=E.MAX_LAYERS)
        child = E.mutate_genome(g, rng)
        E.check_genome(child)
        assert child != g
        if len(child) != len(g):
            seen.add("add" if len(child) > len(g) else "remove")
        else:
            diff = [(a, b) for a, b in zip(g, child) if a != b]
            assert len(diff) == 1
            (a, b), = diff
            seen.add(["width", "kernel", "activation"][[x != y for x, y in zip(a, b)].index(True)])
    assert seen == {"add", "remove", "width", "kernel", "activation"}


def test_genome_validation():
    with pytest.raises(TypeError, match="genome"):
        E.check_genome([(8, 3, "relu")])
    with pytest.raises(ValueError, match="layers"):
        E.check_genome(())
    with pytest.raises(ValueError, match="genome\\[0\\]"):
        E.check_genome(((7, 3, "relu"),))
    with pytest.raises(ValueError, match="genome\\[1\\]"):
        E.check_genome(((8, 3, "relu"), (8, 4, "relu")))


@pytest.mark.parametrize("genome", [((4, 3, "relu"),), ((8, 5, "tanh"), (16, 3, "relu"), (4, 3, "tanh"))])
def test_build_cnn_shapes_and_training_fitness(genome):
    rng = np.random.default_rng(1)
    model = E.build_cnn(genome, 1, 14, 3, rng=0)
    x = rng.standard_normal((5, 1, 14, 14)).astype(np.float32)
    assert model(x).shape == (5, 3)
    y = rng.integers(0, 3, 20)
    xs = rng.standard_normal((20, 1, 14, 14)).astype(np.float32) + y[:, None, None, None]
    acc, _ = E.train_and_evaluate(genome, xs, y, xs, y, steps=30, batch_size=10, lr=0.05, rng=2)
    assert acc > 0.6  # separable toy data: the fitness sees learning
    acc2, _ = E.train_and_evaluate(genome, xs, y, xs, y, steps=30, batch_size=10, lr=0.05, rng=2)
    assert acc == acc2
