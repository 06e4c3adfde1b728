"""The run timeline and how cohorts are divided (DESIGN.md section 3), as pure functions.

A run is a list of timed steps computed up front from the plan's options:
cohort ``i`` starts at ``i * rampup_step_ms``; after sustain the cohorts stop
in reverse order, one per ``rampdown_step_ms``; cooldown follows; then the
run ends. Nothing here touches sockets or clocks, so every rule is testable
on its own.

An arrival-rate run (``opts.executor == "arrival_rate"``) has one cohort,
started at 0 on every generator with its share of the schedule; its rate
steps are its ramp, so sustain lasts the schedule, and the one ramp-down step
lets the iterations still running end before the cohort stops.
"""
import dataclasses
import datetime
import re

from stressgrid.plan.arrivals import share_part
from stressgrid.plan.constants import COOLDOWN, DONE, RAMPDOWN, RAMPUP, SUSTAIN
from stressgrid.plan.split import block_part, split_blocks, split_exactly



@dataclasses.dataclass(frozen=True)
class Step:
    """One thing to do ``at_ms`` after the run started.

    ``action`` is ``"start"`` or ``"stop"`` (of cohort ``cohort``), ``"phase"``
    (enter ``phase``) or ``"end"``.
    """

    at_ms: int
    action: str
    phase: str
    cohort: int = -1


@dataclasses.dataclass(frozen=True)
class Timeline:
    """Every step of a run in order, and where each phase begins and ends."""

    steps: tuple
    phases: tuple  # (phase, start_ms, end_ms)
    total_ms: int

    def phase_at(self, elapsed_ms):
        """``(phase, ms left in it)`` at ``elapsed_ms`` into the run."""
        for phase, start, end in self.phases:
            if start <= elapsed_ms < end:
                return phase, end - elapsed_ms
        return DONE, 0


def build_timeline(opts):
    """The ``Timeline`` of a plan's ``Opts``.

    Phases of zero length are skipped; a cohort stop in ramp-down comes at the
    beginning of its step, as the original does, but at the end of an
    arrival-rate run's (its schedule is over when ramp-down begins).
    """
    n = opts.ramp_steps
    open_model = opts.open_model
    steps = []
    phases = []
    at = 0
    spans = (
        (RAMPUP, 0 if open_model else n * opts.rampup_step_ms),
        (SUSTAIN, opts.sustain_ms),
        (RAMPDOWN, n * opts.rampdown_step_ms),
        (COOLDOWN, opts.cooldown_ms),
    )
    for phase, length in spans:
        phase_start = at
        if length > 0 or phase in (RAMPUP, RAMPDOWN):
            if length > 0:
                phases.append((phase, phase_start, phase_start + length))
            steps.append(Step(at, "phase", phase))
        if phase == RAMPUP:
            steps.extend(Step(at + i * opts.rampup_step_ms, "start", RAMPUP, i) for i in range(n))
        elif phase == RAMPDOWN:
            first = opts.rampdown_step_ms if open_model else 0
            steps.extend(Step(at + first + j * opts.rampdown_step_ms, "stop", RAMPDOWN, n - 1 - j)
                         for j in range(n))
        at += length
    steps.append(Step(at, "end", DONE))
    return Timeline(steps=tuple(steps), phases=tuple(phases), total_ms=at)


def cohort_blocks(blocks, ramp_steps, index):
    """Blocks (dicts) of cohort ``index``: its share of every block, empty shares left out."""
    result = []
    for block in blocks:
        # Element ``index`` of split_exactly(size, ramp_steps), without building the list.
        share, extra = divmod(block["size"], ramp_steps)
        size = share + (1 if index < extra else 0)
        if size:
            result.append(block_part(block, index * share + min(index, extra), size))
    return result


@dataclasses.dataclass(frozen=True)
class Assignment:
    """One generator's part of a cohort: its blocks and first round-robin address; in an
    arrival-rate run also its ``share`` of the schedule (the generator's ``arrival_share``)."""

    generator: bytes
    blocks: list
    address_offset: int
    share: dict = None

    @property
    def size(self):
        """Devices in this assignment (an arrival-rate share's pool)."""
        if self.share is not None:
            return self.share["max_devices"]
        return sum(block["size"] for block in self.blocks)


def assign_cohort(blocks, generators, index, cursor):
    """Split cohort blocks over ``generators`` (routing ids) exactly.

    Returns ``(assignments, cursor)``: generators with an empty share get no
    assignment; ``address_offset`` of each is the run-wide round-robin cursor,
    advanced by each assignment's size so targets are used in strict rotation
    across generators and cohorts. ``index`` rotates which generators receive
    the remainders so small cohorts spread evenly.
    """
    if not generators:
        return [], cursor
    shares = split_blocks(blocks, len(generators), rotate=index)
    assignments = []
    for generator, share in zip(generators, shares):
        if not share:
            continue
        assignment = Assignment(generator, share, cursor)
        cursor += assignment.size
        assignments.append(assignment)
    return assignments, cursor


def assign_arrivals(blocks, generators, opts, cursor):
    """Split an arrival-rate run's schedule over ``generators`` (routing ids) exactly.

    Generator ``g`` of the ``G`` used (no more than the pool has devices) runs every
    ``G``-th iteration from the ``g``-th, with all the blocks (their sizes weigh them)
    and its part of the pool; ``address_offset`` advances by each pool. Returns
    ``(assignments, cursor)`` as ``assign_cohort`` does.
    """
    parts = min(len(generators), opts.max_devices)
    if not parts:
        return [], cursor
    pools = split_exactly(opts.max_devices, parts)
    pre_allocated = split_exactly(opts.pre_allocated_devices, parts)
    assignments = []
    for index, generator in enumerate(generators[:parts]):
        offset, stride = share_part(0, 1, index, parts)
        assignments.append(Assignment(generator, list(blocks), cursor, share={
            "offset": offset, "stride": stride, "from_ms": 0, "behind_ms": 0, "max_devices": pools[index],
            "pre_allocated_devices": pre_allocated[index]}))
        cursor += pools[index]
    return assignments, cursor


def fill_rooms(devices, rooms):
    """How many of ``devices`` each generator takes, as evenly as its free ``rooms`` allow.

    Returns a list like ``rooms``; its sum is ``devices`` when they all fit, else the
    rooms' total. Generators with no more room than an equal share are filled first;
    the rest then share what is left equally, remainders to the first. Every round
    fills a generator or places everything, so there are at most ``len(rooms)``.
    """
    counts = [0] * len(rooms)
    left = devices
    open_ = [i for i, room in enumerate(rooms) if room > 0]
    while left and open_:
        share = left // len(open_)
        small = [i for i in open_ if rooms[i] - counts[i] <= share]
        if not small:
            share, extra = divmod(left, len(open_))
            for k, i in enumerate(open_):
                counts[i] += share + (1 if k < extra else 0)
            return counts
        for i in small:
            left -= rooms[i] - counts[i]
            counts[i] = rooms[i]
        open_ = [i for i in open_ if i not in small]
    return counts


def carve(assignment, generators, counts):
    """Split ``assignment``'s devices into consecutive parts of ``counts`` devices, one per
    generator of ``generators`` (a zero count gets none): the parts keep every block's
    params and, through their address offsets, the devices' targets."""
    blocks = list(assignment.blocks)
    used = 0  # devices of blocks[0] already given to a part
    parts = []
    offset = assignment.address_offset
    for generator, count in zip(generators, counts):
        if not count:
            continue
        part = []
        taken = 0
        while taken < count:
            block = blocks[0]
            size = min(block["size"] - used, count - taken)
            part.append(block_part(block, used, size))
            taken += size
            used += size
            if used == block["size"]:
                blocks.pop(0)
                used = 0
        parts.append(Assignment(generator, part, offset))
        offset += count
    return parts


def run_id(name, now=None):
    """``<name with non-alphanumerics as ->-<UTC YYYYMMDDHHMMSS>``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{re.sub(r'[^A-Za-z0-9]', '-', name)}-{now.strftime('%Y%m%d%H%M%S')}"
