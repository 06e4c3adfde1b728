"""Splitting cohorts exactly among workers, and the book of what each worker runs.

A cohort from the coordinator is dealt out block by block with
``split_blocks``: every block's remainder devices go to the next workers in
turn (a cursor carried across cohorts), so no worker collects all the extras.
Each worker's share keeps the global round-robin over addresses exact: its
``address_offset`` is the cohort's offset plus the devices given to the
workers before it, so the cohort as a whole uses the same consecutive
addresses one engine would.

``fit_shares`` then cuts every share down to the room its worker has left
(its capacity minus the devices it runs): a worker never starts more devices
than its open-file limit lets it hold, and the devices that found no room are
counted, not silently dropped.

An arrival-rate cohort is split by its schedule instead: every worker gets
all the blocks (their sizes weigh them, for every worker alike) and a part of
the generator's ``arrival_share`` (``stressgrid.plan.arrivals.share_part``), with
the pool's ``max_devices`` and ``pre_allocated_devices`` split exactly.
"""
import dataclasses

from stressgrid.plan import Address
from stressgrid.plan.arrivals import (ARRIVAL_RATE, ARRIVAL_SHARE, DEVICES, MAX_STRIDE, MAX_TOTAL_WEIGHT, ArrivalError,
                                      check_arrival_opts, share_part)
from stressgrid.plan.model import MAX_BLOCK_SIZE, MAX_DURATION_MS
from stressgrid.plan.split import block_part, split_blocks, split_exactly
from stressgrid.wire import StartCohort


class CohortError(ValueError):
    """A ``StartCohort`` that cannot be carried out (bad blocks, addresses or id)."""


@dataclasses.dataclass(frozen=True)
class CohortShare:
    """The part of one cohort that one worker runs, as the message it is sent."""

    worker_index: int
    start: StartCohort

    @property
    def devices(self):
        arrivals = arrival_share(self.start)
        if arrivals is not None:
            return arrivals["max_devices"]
        return sum(block["size"] for block in self.start.blocks)


_SHARE_FIELDS = ("offset", "stride", "from_ms", "behind_ms", "max_devices", "pre_allocated_devices")


def arrival_share(start):
    """The ``arrival_share`` map of an arrival-rate cohort's opts, or ``None``."""
    return start.opts.get(ARRIVAL_SHARE) if isinstance(start.opts, dict) else None


def with_share(start, **changes):
    """``start`` with its ``arrival_share`` changed by ``changes``."""
    arrivals = {**arrival_share(start), **changes}
    return dataclasses.replace(start, opts={**start.opts, ARRIVAL_SHARE: arrivals})


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_arrivals(start):
    opts = start.opts
    if opts.get("executor") != ARRIVAL_RATE:
        raise CohortError(f"opts.executor must be {DEVICES!r} or {ARRIVAL_RATE!r}")
    weight = sum(block["size"] for block in start.blocks)
    if not 1 <= weight <= MAX_TOTAL_WEIGHT:
        raise CohortError(f"the block sizes of an arrival-rate cohort must weigh 1 to {MAX_TOTAL_WEIGHT}")
    sustain_ms = opts.get("sustain_ms", 0)
    if not _is_count(sustain_ms):
        raise CohortError("opts.sustain_ms must be an integer")
    try:
        check_arrival_opts(opts, sustain_ms, weight, MAX_DURATION_MS, MAX_BLOCK_SIZE)
    except ArrivalError as exc:
        raise CohortError(f"opts.{exc}") from None
    arrivals = arrival_share(start)
    if not isinstance(arrivals, dict) or set(arrivals) != set(_SHARE_FIELDS) \
            or not all(_is_count(arrivals[name]) for name in _SHARE_FIELDS):
        raise CohortError(f"opts.{ARRIVAL_SHARE} must map {', '.join(_SHARE_FIELDS)} to integers")
    if not 0 <= arrivals["offset"] < arrivals["stride"] <= MAX_STRIDE:
        raise CohortError(f"opts.{ARRIVAL_SHARE}: offset and stride must have 0 <= offset < stride "
                          f"<= {MAX_STRIDE}")
    for name in ("from_ms", "behind_ms"):
        if not 0 <= arrivals[name] <= MAX_DURATION_MS:
            raise CohortError(f"opts.{ARRIVAL_SHARE}.{name} must be from 0 to {MAX_DURATION_MS}")
    if not 1 <= arrivals["max_devices"] <= MAX_BLOCK_SIZE \
            or not 0 <= arrivals["pre_allocated_devices"] <= arrivals["max_devices"]:
        raise CohortError(f"opts.{ARRIVAL_SHARE}: max_devices must be from 1 to {MAX_BLOCK_SIZE}, "
                          f"pre_allocated_devices from 0 to max_devices")


def check_start_cohort(start):
    """Raise ``CohortError`` unless ``start``'s blocks and addresses can be run."""
    if not start.blocks:
        raise CohortError(f"cohort {start.cohort_id!r}: no blocks")
    for i, block in enumerate(start.blocks):
        if not isinstance(block, dict):
            raise CohortError(f"blocks[{i}] must be a map with script, params and size")
        if not isinstance(block.get("script"), str):
            raise CohortError(f"blocks[{i}].script must be a string")
        size = block.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise CohortError(f"blocks[{i}].size must be a non-negative integer")
        if not isinstance(block.get("params") or {}, dict):
            raise CohortError(f"blocks[{i}].params must be a map")
        rows = block.get("data")
        if rows is not None and (not isinstance(rows, list) or not rows
                                 or not all(isinstance(row, dict) for row in rows)):
            raise CohortError(f"blocks[{i}].data must be a non-empty list of maps")
        data_offset = block.get("data_offset", 0)
        if (not isinstance(data_offset, int) or isinstance(data_offset, bool)
                or not 0 <= data_offset < max(1, len(rows or ()))):
            raise CohortError(f"blocks[{i}].data_offset must be a row of its data")
    if not start.addresses:
        raise CohortError(f"cohort {start.cohort_id!r}: no addresses")
    for i, address in enumerate(start.addresses):
        try:
            Address.from_dict(address)
        except (TypeError, KeyError, ValueError, AttributeError):
            raise CohortError(f"addresses[{i}] must be a map with host, port and protocol") from None
    if start.address_offset < 0:
        raise CohortError("address_offset must not be negative")
    if not isinstance(start.opts, dict):
        raise CohortError("opts must be a map")
    if start.opts.get("executor", DEVICES) != DEVICES or ARRIVAL_SHARE in start.opts:
        _check_arrivals(start)


def split_cohort(start, workers, remainder_cursor=0):
    """``(shares, next_cursor)``: ``start`` dealt among ``workers`` worker processes.

    Workers whose share is empty get no ``CohortShare``. ``remainder_cursor``
    says which worker gets the next remainder device; pass the returned
    cursor with the next cohort.
    """
    if arrival_share(start) is not None:
        return _split_arrivals(start, workers), remainder_cursor
    per_worker = [[] for _ in range(workers)]
    for block in start.blocks:
        parts = split_blocks([block], workers, rotate=remainder_cursor % workers)
        for index, part in enumerate(parts):
            per_worker[index].extend(part)
        remainder_cursor += block["size"] % workers
    shares = []
    offset = start.address_offset
    for index, blocks in enumerate(per_worker):
        devices = sum(block["size"] for block in blocks)
        if not devices:
            continue
        shares.append(CohortShare(index, dataclasses.replace(start, blocks=blocks, address_offset=offset)))
        offset += devices
    return shares, remainder_cursor % workers


def _split_arrivals(start, workers):
    """An arrival-rate cohort's share dealt among at most ``workers`` workers (no more than
    its pool has devices)."""
    arrivals = arrival_share(start)
    parts = min(workers, arrivals["max_devices"])
    pools = split_exactly(arrivals["max_devices"], parts)
    pre_allocated = split_exactly(arrivals["pre_allocated_devices"], parts)
    shares = []
    offset = start.address_offset
    for index in range(parts):
        share_offset, stride = share_part(arrivals["offset"], arrivals["stride"], index, parts)
        part = with_share(start, offset=share_offset, stride=stride, max_devices=pools[index],
                          pre_allocated_devices=pre_allocated[index])
        shares.append(CohortShare(index, dataclasses.replace(part, address_offset=offset)))
        offset += pools[index]
    return shares


def _take_devices(blocks, count):
    """The first ``count`` devices of ``blocks`` (the last block taken cut short)."""
    taken = []
    for block in blocks:
        if count <= 0:
            break
        size = min(block["size"], count)
        taken.append(block_part(block, 0, size))
        count -= size
    return taken


def fit_shares(start, shares, room):
    """``(fitted, unplaced)``: ``shares`` cut down to ``room[worker index]`` devices each.

    Shares left empty are dropped; the address offsets stay consecutive over
    the devices that are placed.
    """
    fitted = []
    unplaced = 0
    offset = start.address_offset
    for share in shares:
        devices = min(share.devices, max(0, room[share.worker_index]))
        unplaced += share.devices - devices
        if not devices:
            continue
        if devices == share.devices:
            part = share.start
        elif arrival_share(share.start) is not None:  # a smaller pool for the same schedule
            pre_allocated = min(devices, arrival_share(share.start)["pre_allocated_devices"])
            part = with_share(share.start, max_devices=devices, pre_allocated_devices=pre_allocated)
        else:
            part = dataclasses.replace(share.start, blocks=_take_devices(share.start.blocks, devices))
        fitted.append(CohortShare(share.worker_index, dataclasses.replace(part, address_offset=offset)))
        offset += devices
    return fitted, unplaced


class CohortBook:
    """The live cohorts of this host and each worker's share of them.

    The agent consults it to re-create a restarted worker's devices and to
    know which workers to tell when a cohort or a run stops. An arrival-rate
    share is re-created where its schedule has got to (the seconds since it
    was added), not from its beginning. Time is a parameter (monotonic seconds).
    """

    def __init__(self):
        self._cohorts = {}  # (run_id, cohort_id) -> [CohortShare]
        self._added_at = {}  # (run_id, cohort_id) -> now when added

    def add(self, start, shares, now):
        key = (start.run_id, start.cohort_id)
        if key in self._cohorts:
            raise CohortError(f"cohort {start.cohort_id!r} of run {start.run_id!r} is already running")
        self._cohorts[key] = list(shares)
        self._added_at[key] = now

    def remove(self, run_id, cohort_id):
        """The shares of a cohort, forgotten; empty if it was not running."""
        self._added_at.pop((run_id, cohort_id), None)
        return self._cohorts.pop((run_id, cohort_id), [])

    def remove_run(self, run_id):
        """Every share of every cohort of ``run_id``, forgotten."""
        removed = []
        for key in [key for key in self._cohorts if key[0] == run_id]:
            removed.extend(self._cohorts.pop(key))
            del self._added_at[key]
        return removed

    def runs(self):
        """Run ids with a live cohort, in the order they started."""
        return list(dict.fromkeys(run_id for run_id, _ in self._cohorts))

    def shares_of(self, worker_index, now, resume=False):
        """The messages that create ``worker_index``'s devices, oldest cohort first.

        For a worker that ran them before (``resume``: restarted after a crash or a kill), an
        arrival-rate share starts where its schedule has got to. A worker that was not ready
        when the cohort came runs the share from its beginning on the cohort's clock: what fell
        due while it was starting starts at once, late (its start delay says by how much), so
        that the schedule ends when the coordinator expects it to and none of it is lost.
        """
        starts = []
        for key, shares in self._cohorts.items():
            for share in shares:
                if share.worker_index != worker_index:
                    continue
                arrivals = arrival_share(share.start)
                if arrivals is None:
                    starts.append(share.start)
                    continue
                elapsed_ms = round((now - self._added_at[key]) * 1000)
                if resume:
                    starts.append(with_share(share.start, from_ms=arrivals["from_ms"] + elapsed_ms))
                else:
                    starts.append(with_share(share.start, behind_ms=arrivals["behind_ms"] + elapsed_ms))
        return starts

    def devices(self, worker_index=None):
        """Devices in live cohorts, of one worker or of all."""
        return sum(share.devices for shares in self._cohorts.values() for share in shares
                   if worker_index is None or share.worker_index == worker_index)

    def __len__(self):
        return len(self._cohorts)

    def __bool__(self):
        return bool(self._cohorts)
