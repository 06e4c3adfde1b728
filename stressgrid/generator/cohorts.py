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
"""
import dataclasses

from stressgrid.plan import Address
from stressgrid.plan.split import block_part, split_blocks
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
        return sum(block["size"] for block in self.start.blocks)


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


def split_cohort(start, workers, remainder_cursor=0):
    """``(shares, next_cursor)``: ``start`` dealt among ``workers`` worker processes.

    Workers whose share is empty get no ``CohortShare``. ``remainder_cursor``
    says which worker gets the next remainder device; pass the returned
    cursor with the next cohort.
    """
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
        blocks = share.start.blocks if devices == share.devices else _take_devices(share.start.blocks, devices)
        fitted.append(CohortShare(share.worker_index,
                                  dataclasses.replace(share.start, blocks=blocks, address_offset=offset)))
        offset += devices
    return fitted, unplaced


class CohortBook:
    """The live cohorts of this host and each worker's share of them.

    The agent consults it to re-create a restarted worker's devices and to
    know which workers to tell when a cohort or a run stops.
    """

    def __init__(self):
        self._cohorts = {}  # (run_id, cohort_id) -> [CohortShare]

    def add(self, start, shares):
        key = (start.run_id, start.cohort_id)
        if key in self._cohorts:
            raise CohortError(f"cohort {start.cohort_id!r} of run {start.run_id!r} is already running")
        self._cohorts[key] = list(shares)

    def remove(self, run_id, cohort_id):
        """The shares of a cohort, forgotten; empty if it was not running."""
        return self._cohorts.pop((run_id, cohort_id), [])

    def remove_run(self, run_id):
        """Every share of every cohort of ``run_id``, forgotten."""
        removed = []
        for key in [key for key in self._cohorts if key[0] == run_id]:
            removed.extend(self._cohorts.pop(key))
        return removed

    def runs(self):
        """Run ids with a live cohort, in the order they started."""
        return list(dict.fromkeys(run_id for run_id, _ in self._cohorts))

    def shares_of(self, worker_index):
        """The messages that re-create ``worker_index``'s devices, oldest cohort first."""
        return [share.start for shares in self._cohorts.values()
                for share in shares if share.worker_index == worker_index]

    def devices(self, worker_index=None):
        """Devices in live cohorts, of one worker or of all."""
        return sum(share.devices for shares in self._cohorts.values() for share in shares
                   if worker_index is None or share.worker_index == worker_index)

    def __len__(self):
        return len(self._cohorts)

    def __bool__(self):
        return bool(self._cohorts)
