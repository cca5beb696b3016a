"""The serving side must run from the base install, which has no torch."""

import subprocess
import sys

SERVICE_MODULES = [
    "calsurr.service.batcher",
    "calsurr.service.card",
    "calsurr.service.client",
    "calsurr.service.config",
    "calsurr.service.dataplane",
    "calsurr.service.errors",
    "calsurr.service.grpc_codec",
    "calsurr.service.grpc_extensions",
    "calsurr.service.grpc_servicer",
    "calsurr.service.logs",
    "calsurr.service.metrics",
    "calsurr.service.repository",
    "calsurr.service.request_options",
    "calsurr.service.runtime",
    "calsurr.service.server",
    "calsurr.service.statistics",
    "calsurr.cli",
]


def test_service_imports_and_serve_help_run_with_torch_blocked():
    # sys.modules[name] = None makes any `import torch` raise ImportError in that process.
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        f"for name in {SERVICE_MODULES!r}: __import__(name)\n"
        "from typer.testing import CliRunner\n"
        "from calsurr.cli import app\n"
        "result = CliRunner().invoke(app, ['serve', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert '--repo' in result.output\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_guard_itself_would_catch_a_torch_import():
    code = "import sys\nsys.modules['torch'] = None\nimport calsurr.training.surrogate\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "torch" in result.stderr
