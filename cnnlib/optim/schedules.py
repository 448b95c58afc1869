"""Learning-rate schedules: functions of the step number.

Every schedule is a small callable object: ``schedule(step)`` returns the
learning rate (a Python float) for optimiser step ``step = 0, 1, 2, ...``.
Set it before each step, ``opt.lr = schedule(step)``; :func:`sample` lists
the values of the first steps (for plots).  Where PyTorch has the same
schedule, the formula is PyTorch's, so the values agree with
``torch.optim.lr_scheduler`` for the same settings (``StepLR``,
``CosineAnnealingLR``, ``CyclicLR``, ``LinearLR`` for the warm-up):

=======================  ==========================================================
:class:`Constant`        ``lr``
:class:`StepDecay`       ``lr * gamma ** (step // step_size)``
:class:`Cosine`          ``min_lr + (lr - min_lr) * (1 + cos(pi * step / total_steps)) / 2``
:class:`Cyclic`          triangular, triangular2 and exp_range cycles (Smith 2017)
:class:`Exponential`     geometric sweep from ``start`` to ``end`` (the LR range test)
:class:`LinearSweep`     linear sweep from ``start`` to ``end``
:class:`Warmup`          gradual warm-up in front of any schedule (Goyal et al. 2017)
=======================  ==========================================================

:func:`linear_scaling` is the linear scaling rule, and :func:`goyal` puts it
together with the warm-up.  See the chapter "Hyper-parameters" (Part III,
``notebooks/03_2_hyperparameters.ipynb``).
"""

import math

import numpy as np

from .._validate import check_count, check_number

__all__ = ["Schedule", "Constant", "StepDecay", "Cosine", "Cyclic", "triangular", "triangular2",
           "exp_range", "Exponential", "LinearSweep", "Warmup", "linear_scaling", "goyal",
           "sample"]


class Schedule:
    """Base class: ``schedule(step)`` checks ``step`` and calls :meth:`lr_at`."""

    def __call__(self, step):
        step = check_count(step, "step", minimum=0)
        return float(self.lr_at(step))

    def lr_at(self, step):
        """The learning rate at ``step`` (an int >= 0, already checked)."""
        raise NotImplementedError

    def __repr__(self):
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


class Constant(Schedule):
    """The same learning rate at every step."""

    def __init__(self, lr):
        self.lr = check_number(lr, "lr")

    def lr_at(self, step):
        return self.lr


class StepDecay(Schedule):
    """``lr * gamma ** (step // step_size)``, as ``torch.optim.lr_scheduler.StepLR``."""

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr = check_number(lr, "lr")
        self.step_size = check_count(step_size, "step_size")
        self.gamma = check_number(gamma, "gamma")

    def lr_at(self, step):
        return self.lr * self.gamma ** (step // self.step_size)


class Cosine(Schedule):
    """Half a cosine from ``lr`` (step 0) to ``min_lr`` (step ``total_steps``).

    ``min_lr + (lr - min_lr) * (1 + cos(pi * step / total_steps)) / 2``, the
    closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR`` with
    ``T_max=total_steps``; after ``total_steps`` it stays at ``min_lr``.
    """

    def __init__(self, lr, total_steps, min_lr=0.0):
        self.lr = check_number(lr, "lr")
        self.total_steps = check_count(total_steps, "total_steps")
        self.min_lr = check_number(min_lr, "min_lr")

    def lr_at(self, step):
        t = min(step, self.total_steps)
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * t / self.total_steps)) / 2


class Cyclic(Schedule):
    """Cyclical learning rate (Smith 2017), as ``torch.optim.lr_scheduler.CyclicLR``.

    The rate rises linearly from ``base_lr`` to ``max_lr`` over
    ``step_size_up`` steps, falls back over ``step_size_down`` steps (default:
    the same), and repeats.  The amplitude ``max_lr - base_lr`` is multiplied
    by a scale that depends on ``mode``:

    * ``"triangular"``: 1 (every cycle the same);
    * ``"triangular2"``: ``1 / 2 ** (cycle - 1)``, halved each cycle
      (``cycle = 1, 2, ...``);
    * ``"exp_range"``: ``gamma ** step``, decaying with every step.

    With ``cycle = floor(1 + step / (up + down))`` and ``x = 1 + step / (up +
    down) - cycle`` (the position in the cycle, in [0, 1)), the rate is
    ``base_lr + (max_lr - base_lr) * h(x) * scale``, where ``h`` climbs from 0
    to 1 while ``x <= up / (up + down)`` and falls back to 0 after: PyTorch's
    own arithmetic, so the values agree to the last bit or two.
    """

    MODES = ("triangular", "triangular2", "exp_range")

    def __init__(self, base_lr, max_lr, step_size_up=2000, step_size_down=None,
                 mode="triangular", gamma=1.0):
        self.base_lr = check_number(base_lr, "base_lr")
        self.max_lr = check_number(max_lr, "max_lr")
        self.step_size_up = check_count(step_size_up, "step_size_up")
        self.step_size_down = (self.step_size_up if step_size_down is None
                               else check_count(step_size_down, "step_size_down"))
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.gamma = check_number(gamma, "gamma")

    def scale(self, cycle, step):
        """The amplitude factor for cycle number ``cycle`` (from 1) at ``step``."""
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (cycle - 1))
        return self.gamma ** step

    def lr_at(self, step):
        total = float(self.step_size_up + self.step_size_down)
        ratio = self.step_size_up / total
        cycle = math.floor(1 + step / total)
        x = 1.0 + step / total - cycle
        height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        return self.base_lr + (self.max_lr - self.base_lr) * height * self.scale(cycle, step)


def triangular(base_lr, max_lr, step_size_up, step_size_down=None):
    """:class:`Cyclic` with ``mode="triangular"``: the same triangle every cycle."""
    return Cyclic(base_lr, max_lr, step_size_up, step_size_down, mode="triangular")


def triangular2(base_lr, max_lr, step_size_up, step_size_down=None):
    """:class:`Cyclic` with ``mode="triangular2"``: the amplitude halves every cycle."""
    return Cyclic(base_lr, max_lr, step_size_up, step_size_down, mode="triangular2")


def exp_range(base_lr, max_lr, step_size_up, step_size_down=None, gamma=0.999):
    """:class:`Cyclic` with ``mode="exp_range"``: the amplitude decays as ``gamma ** step``."""
    return Cyclic(base_lr, max_lr, step_size_up, step_size_down, mode="exp_range", gamma=gamma)


class Exponential(Schedule):
    """A geometric sweep: ``start * (end / start) ** (step / (num_steps - 1))``.

    Step 0 gives ``start`` and step ``num_steps - 1`` gives ``end``; every
    step multiplies the rate by the same factor, so each decade of learning
    rates gets the same number of steps (the LR range test's sweep).  Steps
    beyond the end continue the geometric progression.
    """

    def __init__(self, start, end, num_steps):
        self.start = check_number(start, "start", positive=True)
        self.end = check_number(end, "end", positive=True)
        self.num_steps = check_count(num_steps, "num_steps", minimum=2)

    def lr_at(self, step):
        return self.start * (self.end / self.start) ** (step / (self.num_steps - 1))


class LinearSweep(Schedule):
    """A linear sweep: ``start + (end - start) * step / (num_steps - 1)``.

    The outline's version of the range test ("increase the rate linearly,
    e.g. 1e-7 -> 1").  With a wide range almost every step lands in the top
    decade: see the chapter.
    """

    def __init__(self, start, end, num_steps):
        self.start = check_number(start, "start")
        self.end = check_number(end, "end")
        self.num_steps = check_count(num_steps, "num_steps", minimum=2)

    def lr_at(self, step):
        return self.start + (self.end - self.start) * step / (self.num_steps - 1)


class Warmup(Schedule):
    """Gradual warm-up (Goyal et al. 2017) in front of another schedule.

    For ``step < warmup_steps`` the rate is ``schedule(step) * factor`` with
    ``factor = start_factor + (1 - start_factor) * step / warmup_steps``,
    rising linearly from ``start_factor`` to 1; from ``warmup_steps`` on it
    is ``schedule(step)`` unchanged.  For a constant base this is
    ``torch.optim.lr_scheduler.LinearLR(start_factor, 1.0, warmup_steps)``.
    Goyal et al. start at the small-batch rate, ``start_factor = 1 / k`` for
    a batch ``k`` times larger.
    """

    def __init__(self, schedule, warmup_steps, start_factor=0.0):
        if not callable(schedule):
            raise TypeError(f"schedule must be callable (step -> lr), got {type(schedule).__name__}")
        self.schedule = schedule
        self.warmup_steps = check_count(warmup_steps, "warmup_steps", minimum=0)
        self.start_factor = check_number(start_factor, "start_factor")
        if self.start_factor > 1:
            raise ValueError(f"start_factor must be in [0, 1], got {start_factor}")

    def lr_at(self, step):
        lr = self.schedule(step)
        if step >= self.warmup_steps:
            return lr
        return lr * (self.start_factor + (1 - self.start_factor) * step / self.warmup_steps)


def linear_scaling(base_lr, batch_size, base_batch_size):
    """The linear scaling rule: ``base_lr * batch_size / base_batch_size``.

    "When the minibatch size is multiplied by k, multiply the learning rate
    by k" (Goyal et al. 2017).
    """
    base_lr = check_number(base_lr, "base_lr")
    batch_size = check_count(batch_size, "batch_size")
    base_batch_size = check_count(base_batch_size, "base_batch_size")
    return base_lr * batch_size / base_batch_size


def goyal(base_lr, base_batch_size, batch_size, warmup_steps, schedule=None):
    """Linear scaling plus gradual warm-up, as in Goyal et al. 2017.

    The target rate is ``lr = linear_scaling(base_lr, batch_size,
    base_batch_size)``; ``schedule`` maps that rate to the base schedule
    (a callable ``lr -> Schedule``, default :class:`Constant`), and the
    warm-up climbs from the small-batch rate ``base_lr`` (``start_factor =
    1 / k``) to it over ``warmup_steps`` steps.  ``warmup_steps=0`` gives the
    rule without warm-up.
    """
    lr = linear_scaling(base_lr, batch_size, base_batch_size)
    base = Constant(lr) if schedule is None else schedule(lr)
    if not callable(base):
        raise TypeError("schedule(lr) must return a callable schedule")
    k = batch_size / base_batch_size
    return Warmup(base, warmup_steps, start_factor=min(1.0, 1 / k))


def sample(schedule, num_steps):
    """The rates of steps ``0 .. num_steps - 1`` as a float64 array (num_steps,)."""
    if not callable(schedule):
        raise TypeError(f"schedule must be callable (step -> lr), got {type(schedule).__name__}")
    num_steps = check_count(num_steps, "num_steps", minimum=0)
    return np.array([schedule(t) for t in range(num_steps)], dtype=np.float64)
