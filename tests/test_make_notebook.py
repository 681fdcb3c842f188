"""`make notebook`: Jupyter Lab started by the Makefile's own recipe (study/lab.py), headless on a free local port,
whose kernel for both notebooks is the Python of the project (the one running these tests), even with another python3
kernelspec in the user's Jupyter folder; each notebook's first cells run in it; and the server, once stopped, leaves
no process, no file and no port behind. And each notebook's first import cell, on a Python that lacks the project's
packages, stops with a sentence saying so."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest
from idx_files import write_fake_fashion_mnist

from study import kernel, lab

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = lab.NOTEBOOKS
NOTEBOOK = NOTEBOOKS[0]
TIMEOUT = 60  # seconds, for the server to answer and for a cell to run; the whole test takes well under that
JUPYTER_ARTEFACTS = (".ipynb_checkpoints", ".virtual_documents", ".jupyter")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port):
    """Whether nothing listens on ``port`` any more and a server could take it (as servers do, with SO_REUSEADDR:
    the connections the stopped server closed may linger in TIME_WAIT)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def process_is_gone(pid):
    """Whether ``pid`` has exited (a zombie that nobody reaped yet counts as gone: it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def untracked(repo):
    """The repository's untracked files that git does not ignore, and every Jupyter artefact in it, ignored or not
    (the caches Python and numba write are ignored, and other tests write them too)."""
    found = set()
    if (repo / ".git").exists() and shutil.which("git"):
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, check=True,
                                capture_output=True, text=True).stdout
        found |= {line[3:] for line in status.splitlines() if line.startswith("??")}
    for folder, subfolders, files in os.walk(repo):
        subfolders[:] = [name for name in subfolders if name not in (".git", ".venv")]
        found |= {os.path.relpath(os.path.join(folder, name), repo) for name in subfolders + files
                  if name in JUPYTER_ARTEFACTS}
    return found


class Server:
    """A Jupyter server's REST API and one kernel's channels, through the server's websocket."""

    def __init__(self, port, token):
        self.url, self.token = f"http://127.0.0.1:{port}", token

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=TIMEOUT) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def wait_until_up(self, process):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}")
            try:
                return self.request("GET", "/api/status")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError(f"the server did not answer within {TIMEOUT} s")

    def execute(self, ws, code):
        """Run ``code`` in the kernel behind ``ws``; return its stdout and its error, if any."""
        msg_id, stdout, error, replied, idle = uuid.uuid4().hex, [], None, False, False
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": self.session,
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        deadline = time.monotonic() + TIMEOUT
        while not (replied and idle):
            assert time.monotonic() < deadline, f"no reply within {TIMEOUT} s to {code[:60]!r}"
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                stdout.append(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "execute_reply":
                replied = True
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        return "".join(stdout), error


def run_first_cells(server, ws, notebook):
    """The notebook's parameters cell, then its first import cell (the check of the kernel, then the imports), in the
    kernel behind ``ws``: the line they print says which parameters and data it runs with."""
    code_cells = [cell for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]
    assert "parameters" in code_cells[0].metadata.get("tags", [])
    for cell in code_cells[:2]:
        out, error = server.execute(ws, cell.source)
        assert error is None, error
    assert re.match(r"these outputs: full study, FRESH = False \(recorded runs read, the missing trained\), "
                    r"\d+ processes; data in a folder outside", out)


@pytest.fixture
def jupyter_home(tmp_path):
    """The server's environment: its own Jupyter folders under ``tmp_path`` (the user's are left alone), a decoy
    ``python3`` kernelspec in the user's data folder that would win without study.lab (it marks its kernels with an
    environment variable), and a small fake Fashion-MNIST for the notebook's first cells."""
    data = tmp_path / "jupyter-data"
    decoy = data / "kernels" / "python3"
    decoy.mkdir(parents=True)
    (decoy / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "a python3 kernelspec of another Python", "language": "python",
        "env": {"DECOY_KERNELSPEC": "1"}}))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("JUPYTER", "MAKE", "MFLAGS")) and key not in ("MPLBACKEND", "IPYTHONDIR")}
    env.update(JUPYTER_DATA_DIR=str(data), JUPYTER_PREFER_ENV_PATH="0", JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               IPYTHONDIR=str(tmp_path / "ipython"), PYTHONDONTWRITEBYTECODE="1",
               FASHION_MNIST_DIR=str(write_fake_fashion_mnist(tmp_path / "fashion", n_train=200, n_test=100)))
    return env


def test_the_decoy_kernelspec_would_win_without_the_launcher(jupyter_home, monkeypatch):
    """The test's decoy is one that shadows the environment's python3 kernelspec in plain Jupyter."""
    if not (lab.data_dir() / "kernels" / lab.KERNEL_NAME / "kernel.json").is_file():
        pytest.skip(f"this Python has no python3 kernelspec in {lab.data_dir()} (study.lab would write one there)")
    for key in [k for k in os.environ if k.startswith("JUPYTER")]:
        monkeypatch.delenv(key)
    for key, value in jupyter_home.items():
        monkeypatch.setenv(key, value)
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").env == {"DECOY_KERNELSPEC": "1"}
    monkeypatch.setenv("JUPYTER_PATH", lab.jupyter_path())
    assert KernelSpecManager().get_kernel_spec("python3").env == {}
    assert lab.same_python(lab.kernel_executable(), sys.executable)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make notebook needs make")
def test_make_notebook_serves_the_notebook_with_the_projects_own_kernel(jupyter_home, tmp_path):
    pytest.importorskip("jupyterlab")
    pytest.importorskip("websocket")
    from websocket import create_connection

    for notebook in NOTEBOOKS:
        assert nbformat.read(notebook, as_version=4).metadata.kernelspec.name == lab.KERNEL_NAME
    port, token = free_port(), uuid.uuid4().hex
    before = untracked(REPO)
    started = time.monotonic()
    # The Makefile's recipe itself, with this test's Python as the venv's (the same file when the suite runs in
    # .venv, as `make test` runs it) and without remaking its prerequisites (.venv and the data are there).
    command = ["make", "--no-print-directory", "-o", ".venv/.run-deps", "-o", "data", "notebook",
               f"PY={sys.executable}", f"PORT={port}", "NO_BROWSER=1",
               f"JUPYTER_ARGS=--ServerApp.ip=127.0.0.1 --ServerApp.port_retries=0 --IdentityProvider.token={token}"]
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=jupyter_home, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server, kernel_pid, second_pid = Server(port, token), None, None
    try:
        server.wait_until_up(process)
        # What Jupyter Lab does when it opens the notebook: a session for it, with the notebook's kernelspec.
        session = server.request("POST", "/api/sessions", {
            "path": NOTEBOOK.name, "type": "notebook", "name": NOTEBOOK.name, "kernel": {"name": lab.KERNEL_NAME}})
        server.session = session["id"]
        kernel_id = session["kernel"]["id"]
        ws = create_connection(f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?token={token}",
                               timeout=TIMEOUT)
        try:
            out, error = server.execute(ws, "import json, os, sys\n"
                                            "print(json.dumps([sys.executable, sys.prefix, os.getcwd(), os.getpid(),"
                                            " os.environ.get('DECOY_KERNELSPEC')]))")
            assert error is None
            executable, prefix, cwd, kernel_pid, decoy = json.loads(out)
            assert lab.same_python(executable, sys.executable), (executable, sys.executable)
            assert Path(prefix).resolve() == Path(sys.prefix).resolve()
            if (REPO / ".venv").exists() and Path(sys.prefix).resolve() == (REPO / ".venv").resolve():
                assert lab.same_python(executable, REPO / ".venv" / "bin" / "python")
            assert decoy is None  # the user-level python3 kernelspec did not shadow the environment's
            assert Path(cwd).resolve() == REPO.resolve()

            run_first_cells(server, ws, NOTEBOOK)
        finally:
            ws.close()
        # The second notebook, from the file browser of the same server: its own session and kernel, the same Python.
        session = server.request("POST", "/api/sessions", {
            "path": NOTEBOOKS[1].name, "type": "notebook", "name": NOTEBOOKS[1].name,
            "kernel": {"name": lab.KERNEL_NAME}})
        server.session = session["id"]
        ws = create_connection(f"ws://127.0.0.1:{port}/api/kernels/{session['kernel']['id']}/channels?token={token}",
                               timeout=TIMEOUT)
        try:
            out, error = server.execute(ws, "import os, sys; print(sys.executable); print(os.getpid())")
            assert error is None
            executable, second_pid = out.split()
            assert lab.same_python(executable, sys.executable)
            run_first_cells(server, ws, NOTEBOOKS[1])
        finally:
            ws.close()
        server.request("POST", "/api/shutdown")  # as File > Shut Down does: the kernels first, then the server
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(log.read_text())
    elapsed = time.monotonic() - started
    print(f"make notebook: started, served both notebooks' first cells and stopped in {elapsed:.1f} s")

    assert "kernel 'python3' on" in log.read_text()
    deadline = time.monotonic() + 10
    pids = (kernel_pid, int(second_pid))
    while not (all(map(process_is_gone, pids)) and port_is_free(port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(map(process_is_gone, pids))
    assert port_is_free(port)
    runtime = tmp_path / "runtime"
    assert not [p.name for p in runtime.glob("*") if p.name.startswith(("jpserver-", "kernel-"))]
    assert untracked(REPO) == before
    assert elapsed < TIMEOUT


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_the_first_import_cell_checks_the_kernel_before_importing_anything(notebook):
    cells = [cell for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]
    first_import = next(cell for cell in cells if re.search(r"^(import|from) ", cell.source, re.MULTILINE))
    lines = [line for line in first_import.source.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "from study.kernel import require_project_packages"
    assert lines[1].startswith("require_project_packages()")


def test_a_kernel_without_the_projects_packages_stops_with_a_sentence(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    with pytest.raises(ModuleNotFoundError) as raised:
        kernel.require_project_packages(("numpy", "surely_not_a_package_x", "numba"))
    message = str(raised.value)
    assert message == ("This kernel runs on /usr/bin/python3, which lacks surely_not_a_package_x: open the notebook "
                       "with `make notebook` in the repository, which installs the project's packages into .venv and "
                       "starts Jupyter Lab with that Python's own kernel.")
    assert isinstance(raised.value, kernel.WrongKernelError)
    assert raised.value.name == "surely_not_a_package_x"
    assert kernel.require_project_packages() is None  # this Python has them all


def test_the_check_covers_what_requirements_txt_installs_for_the_notebook():
    """The first block of requirements.txt (what the library and the notebook import) is what the check looks for."""
    block = (REPO / "requirements.txt").read_text().split("jupyter>=")[0]  # what follows serves Jupyter and papermill
    names = [re.match(r"[A-Za-z0-9_.-]+", line).group(0).lower() for line in block.splitlines()
             if line.strip() and not line.startswith("#")]
    assert sorted(names) == sorted(kernel.PROJECT_PACKAGES)


def test_the_check_imports_only_the_standard_library():
    """On a Python without the project's packages, importing the check (and the study package) must not fail."""
    code = ("import sys; sys.modules.update({n: None for n in " + repr(kernel.PROJECT_PACKAGES) + "});"
            "from study.kernel import require_project_packages\n"
            "try:\n    require_project_packages()\nexcept ModuleNotFoundError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"This kernel runs on {sys.executable}, which lacks numpy, numba, pandas,")
