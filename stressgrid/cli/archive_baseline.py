"""A results archive as a baseline: a ``.tar.gz`` a run left (``--local`` saves it in the
working directory) is added to the coordinator's history, then compared with.

Only three of its files are read, by name, never extracted: ``<run id>/plan.json``,
``<run id>/summary.json`` and ``<run id>/histograms.json`` (archives from before the
whole-run histograms were kept have none: thresholds on a histogram then cannot use them).
"""
import json
import tarfile

from .api_client import ApiError
from .exits import EXIT_COORDINATOR, EXIT_USAGE, CliError

MEMBERS = ("plan.json", "summary.json", "histograms.json")
MAX_MEMBER_BYTES = 16 * 1024 * 1024


def is_archive(reference):
    """True when a baseline names an archive file rather than a run of the history."""
    return isinstance(reference, str) and reference.endswith((".tar.gz", ".tgz"))


def read_archive(path):
    """``{"id", "plan", "summary", "histograms"}`` of the archive at ``path`` (the import's
    body); raises ``CliError`` saying what is wrong with the file."""
    found = {}
    run_id = None
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                top, _, name = member.name.partition("/")
                if name not in MEMBERS or not member.isfile():
                    continue
                if run_id not in (None, top):
                    raise CliError(EXIT_USAGE, f"--baseline {path}: holds more than one run ({run_id}, {top})")
                run_id = top
                if member.size > MAX_MEMBER_BYTES:
                    raise CliError(EXIT_USAGE, f"--baseline {path}: {member.name} is larger than "
                                               f"{MAX_MEMBER_BYTES // (1024 * 1024)} MiB")
                found[name] = json.loads(archive.extractfile(member).read().decode("utf-8"))
    except FileNotFoundError:
        raise CliError(EXIT_USAGE, f"--baseline {path}: no such file") from None
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise CliError(EXIT_USAGE, f"--baseline {path}: not a results archive (.tar.gz): {exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CliError(EXIT_USAGE, f"--baseline {path}: a file in it is not JSON: {exc}") from None
    missing = [name for name in MEMBERS[:2] if name not in found]
    if missing:
        raise CliError(EXIT_USAGE, f"--baseline {path}: not a results archive (no {' or '.join(missing)})")
    return {"id": run_id, "plan": found["plan.json"], "summary": found["summary.json"],
            "histograms": found.get("histograms.json")}


def import_baseline(api, path):
    """Add the run of the archive at ``path`` to the coordinator's history; its run id (a run
    the history has already is used as it is)."""
    body = read_archive(path)
    try:
        return api.call("POST", "/api/runs/import", body)["id"]
    except ApiError as exc:
        if exc.status == 409 and exc.code == "run_exists":
            return body["id"]
        if 400 <= exc.status < 500:
            raise CliError(EXIT_USAGE, f"--baseline {path}: the coordinator refused it: "
                                       f"{exc.error.get('field', '')}: {exc.message}") from None
        raise CliError(EXIT_COORDINATOR, f"--baseline {path}: the coordinator failed to import it: {exc}") \
            from None
