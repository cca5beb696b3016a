"""The event tool is generator-side: it imports and runs with torch blocked (DESIGN.md, generator side)."""

import subprocess
import sys

EVENT_MODULES = [
    "calsurr.events.bookkeeping",
    "calsurr.events.colour_flow",
    "calsurr.events.command",
    "calsurr.events.lhe",
    "calsurr.events.observables",
    "calsurr.events.phase_space",
    "calsurr.events.plots",
    "calsurr.events.run",
    "calsurr.events.summary",
    "calsurr.events.surrogates",
    "calsurr.events.unweighting",
]


def test_the_blocker_would_catch_a_torch_import():
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "import calsurr.training.surrogate\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_event_modules_import_and_run_with_torch_blocked(tmp_path):
    # A meta-path finder that refuses torch: any `import torch` raises ImportError in that process. (Not the
    # sys.modules['torch'] = None of tests/service: scipy probes sys.modules for torch and trips over a None.)
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        f"for name in {EVENT_MODULES!r}: __import__(name)\n"
        "import vegas, mplhep, scipy.stats\n"
        "from typer.testing import CliRunner\n"
        "from calsurr.cli import app\n"
        "result = CliRunner().invoke(app, ['events', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert '--gate-threshold' in result.output\n"
        f"args = ['events', 'gg_gg', '--events', '50', '--out', {str(tmp_path / 'x.lhe')!r}, '--method', 'standard',"
        f" '--sampler', 'vegas', '--vegas-points', '2000', '--optimisation-points', '5000', '--compare',"
        f" '--plots', {str(tmp_path / 'plots')!r}]\n"
        "result = CliRunner().invoke(app, args)\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    assert (tmp_path / "plots" / "leading_pt.png").read_bytes()[:4] == b"\x89PNG"
