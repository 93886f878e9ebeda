"""The bundled AWS CLI v1, started early and run with datakit's plugin.

Started first (engine/cli.py, ``Bundled``), this imports awscli while datakit
reads its settings; then it reads one line (its folder and environment), makes
the CLI's session and loads the S3 model while datakit plans, and runs the
arguments of the second line exactly as `python -m awscli ARGS` would, with the
plugin's hooks of the line's setup (plugin.py). An empty line ends it. datakit
keeps its stdin open until the run ends: if datakit dies (killed outright, where
the kernel's parent-death signal is missing), the system closes it and the CLI
ends at once.

It imports nothing of datakit but the plugin, which uses the standard library only.
"""
import gc
import json
import os
import sys
import threading

START = ("import sys; sys.path[:] = [p for p in sys.path if p]; "  # nothing from the folder it runs in
         "from datakit_data.engine import launcher; launcher.main()")


def _watch() -> None:
    sys.stdin.read()  # returns when datakit has closed our stdin, or has died
    os._exit(137)


def main() -> None:
    try:
        import awscli.clidriver

        from . import plugin

        line = sys.stdin.readline()
        if not line.strip():
            sys.exit(0)
        prepared = json.loads(line)
        os.chdir(prepared["cwd"])
        os.environ.update(prepared["env"])
        driver = awscli.clidriver.create_clidriver()
        try:  # about 0.05 s per client the command makes
            driver.session.get_service_model("s3")
            driver.session.get_component("data_loader").load_service_model("s3", "endpoint-rule-set-1")
        except Exception:  # noqa: BLE001  the command itself says what is wrong
            pass
        line = sys.stdin.readline()
        if not line.strip():
            sys.exit(0)
        threading.Thread(target=_watch, daemon=True).start()
        gc.freeze()  # what is loaded so far stays: collections need not walk it
        asked = json.loads(line)  # {"args": [...], "setup": the plugin's setup}
        plugin.install(driver.session, asked["setup"])
        code = driver.main(asked["args"])
        gc.freeze()  # the process ends: its last collection would cost about 0.1 s
        sys.exit(code)
    except KeyboardInterrupt:
        sys.exit(130)
