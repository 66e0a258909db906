"""Audit requirements.txt for known vulnerabilities with pip-audit (``make audit``; a step of .ci/run).

pip-audit asks a vulnerability service about each pinned package: PyPI's JSON
API by default, OSV as the alternative.  Where neither can be reached (a
machine whose package proxy serves only the simple index, and no other
network), pip-audit itself still says "No known vulnerabilities found" and
exits 0 after skipping every package, which would read as a clean audit.  So
this script reads pip-audit's JSON and decides:

* a known vulnerability, or a package that could not be audited while others
  could: fail, naming them;
* every package skipped with the default service: try OSV; if OSV cannot be
  reached either, print why the audit was skipped (with both services' own
  errors) and exit 0 — skipped, loudly, not passed;
* otherwise: pass, with the number of packages audited and the service used.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIP_AUDIT = Path(sys.executable).parent / "pip-audit"
REQUIREMENTS = ROOT / "requirements.txt"


@dataclass
class Audit:
    service: str
    returncode: int
    error: str = ""
    audited: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    vulnerable: dict[str, list[str]] = field(default_factory=dict)

    @property
    def reached_service(self) -> bool:
        return bool(self.audited) or bool(self.vulnerable)


def run_pip_audit(service: str) -> Audit:
    command = [str(PIP_AUDIT), "-r", str(REQUIREMENTS), "--format", "json", "--progress-spinner", "off",
               "--vulnerability-service", service]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603 - fixed arguments
    audit = Audit(service=service, returncode=result.returncode)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        audit.error = (result.stderr.strip().splitlines() or ["pip-audit printed no report"])[-1]
        return audit
    for dependency in report.get("dependencies", []):
        name = f"{dependency['name']}=={dependency.get('version', '?')}"
        if "skip_reason" in dependency:
            audit.skipped[name] = dependency["skip_reason"]
        elif dependency.get("vulns"):
            audit.vulnerable[name] = [
                f"{vuln['id']} (fixed in {', '.join(vuln.get('fix_versions') or ['no release yet'])})"
                for vuln in dependency["vulns"]
            ]
        else:
            audit.audited.append(name)
    return audit


def verdict(audit: Audit) -> int:
    if audit.vulnerable:
        print(f"pip-audit ({audit.service}): known vulnerabilities:")
        for name, vulns in audit.vulnerable.items():
            print(f"  {name}: {'; '.join(vulns)}")
        return 1
    if audit.skipped:
        print(f"pip-audit ({audit.service}): {len(audit.skipped)} packages could not be audited:")
        for name, reason in audit.skipped.items():
            print(f"  {name}: {reason}")
        return 1
    print(f"pip-audit ({audit.service}): {len(audit.audited)} packages audited, no known vulnerabilities.")
    return 0


def main() -> int:
    first = run_pip_audit("pypi")
    if first.reached_service:
        return verdict(first)
    second = run_pip_audit("osv")
    if second.reached_service:
        return verdict(second)
    pypi_reason = first.error or f"no package found there, e.g. \"{next(iter(first.skipped.values()), 'no report')}\""
    print("pip-audit SKIPPED: no vulnerability service can be reached from this machine.")
    print(f"  PyPI JSON API: {pypi_reason}")
    print(f"  OSV: {second.error or 'no package audited'}")
    print("  The pins were not checked; run `make audit` on a machine with access to pypi.org or api.osv.dev.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
