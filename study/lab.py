"""``make notebook``: Jupyter Lab on the study's two notebooks, whose kernel is the Python that runs this.

    python -m study.lab [JUPYTER LAB OPTIONS...]

The notebook's kernelspec is ``python3``, the name every executor of the notebook asks for (papermill in
``make run``, ``study.runall``, the tests). Jupyter resolves that name to the first ``kernels/python3`` folder on its
data path; in a virtual environment that path starts with the environment's own ``share/jupyter``, whose
``python3`` spec (installed by ipykernel's wheel, with ``python`` as its command) runs the Python of the server.
But ``JUPYTER_PATH`` comes before it, and with ``JUPYTER_PREFER_ENV_PATH=0`` so does the user's folder
(``~/.local/share/jupyter``), where a ``python3`` spec written by another Python (``ipykernel install --user``)
would win and start a kernel without the project's packages. So this launcher puts this Python's ``share/jupyter``
first on ``JUPYTER_PATH`` (writing the ``python3`` spec there, as ``ipykernel install --sys-prefix`` does, in the
rare environment that lacks it), checks that ``python3`` now resolves to this Python, and starts Jupyter Lab in the
same process, rooted at the repository, opening the first notebook, ``Fashion_mnist_model.ipynb``; the second,
``How_far_can_an_MLP_go.ipynb``, lies beside it in the file browser, and the first one's last cell links to it
(Jupyter Lab opens one file from its command line). The other kernels Jupyter knows stay available.
It passes ``--allow-root`` when run as root (a container, CI), and every other option to Jupyter Lab as given
(``--no-browser``, ``--port=8890``, ``--ip=0.0.0.0``...). A port asked for (``make notebook PORT=8890``) is that
port or none: when it is taken the launcher stops with a sentence, and Jupyter is told not to move to another
(``--ServerApp.port_retries=0``), which a user with an ssh tunnel to the port asked for would not find.
``tests/test_make_notebook.py`` starts it through ``make notebook``.
"""

import errno
import os
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = (REPO / "Fashion_mnist_model.ipynb", REPO / "How_far_can_an_MLP_go.ipynb")  # both in the root folder
NOTEBOOK = NOTEBOOKS[0]  # the one Jupyter Lab opens
KERNEL_NAME = "python3"  # the notebook's metadata kernelspec, which papermill, study.runall and the tests ask for too


def data_dir(prefix=None):
    """This Python's (its virtual environment's) Jupyter data folder, whose ``kernels/`` holds its own kernelspecs."""
    return Path(sys.prefix if prefix is None else prefix) / "share" / "jupyter"


def jupyter_path(existing=None):
    """``JUPYTER_PATH`` with this Python's data folder first, then what it held (``existing``, or the environment's)."""
    existing = os.environ.get("JUPYTER_PATH", "") if existing is None else existing
    first = str(data_dir())
    return os.pathsep.join([first, *(p for p in existing.split(os.pathsep) if p and p != first)])


def ensure_kernelspec():
    """Write this Python's ``python3`` kernelspec into its data folder unless one is there (ipykernel's wheel puts it
    there; a Python installed otherwise may lack it). Returns the spec's folder."""
    folder = data_dir() / "kernels" / KERNEL_NAME
    if not (folder / "kernel.json").is_file():
        from ipykernel.kernelspec import install

        install(kernel_name=KERNEL_NAME, prefix=sys.prefix)
    return folder


def kernel_executable(kernel_name=KERNEL_NAME):
    """The Python a kernel named ``kernel_name`` would run on, as Jupyter resolves it from the current environment:
    a spec whose command is a bare ``python`` runs the server's own Python (``sys.executable``)."""
    from jupyter_client.kernelspec import KernelSpecManager

    argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    return sys.executable if argv[0] in bare else argv[0]


def same_python(a, b):
    """Whether two paths name the same Python of the same environment (a venv's ``python`` is a symlink to the base
    interpreter, so its folder tells environments apart, not the file it resolves to)."""
    a, b = Path(a), Path(b)
    return a == b or (a.parent.resolve() == b.parent.resolve() and a.resolve() == b.resolve())


def lab_arguments(options):
    """Jupyter Lab's command line: the repository as its root, the notebook opened, ``--allow-root`` as root, then
    ``options`` as given (later options win)."""
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [str(NOTEBOOK), f"--ServerApp.root_dir={REPO}", *root, *options]


def requested_port(options):
    """The port asked for among Jupyter Lab's ``options`` (``--port=N``, ``--port N``, ``--ServerApp.port=N``; the
    last one wins, as in Jupyter), or None."""
    port = None
    for i, option in enumerate(options):
        name, _, value = option.partition("=")
        if name in ("--port", "--ServerApp.port"):
            port = value if value else (options[i + 1] if i + 1 < len(options) else None)
    if port is not None and not port.isdigit():
        raise SystemExit(f"study.lab: --port must be a port number, got {port!r}")
    return None if port is None else int(port)


def check_port(port, host="127.0.0.1"):
    """SystemExit with a sentence when ``port`` is taken on ``host``, so that Jupyter does not serve elsewhere."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise SystemExit(f"study.lab: port {port} is taken (another Jupyter, say), and Jupyter would serve on "
                             "another port, which a tunnel to this one would not find: stop what serves there, or "
                             f"ask for another port (make notebook PORT={port + 1}), or leave out PORT to let "
                             "Jupyter choose") from None


def main(argv=None):
    options = sys.argv[1:] if argv is None else list(argv)
    port = requested_port(options)
    if port is not None:  # before anything starts: a port taken is said at once
        check_port(port)
        if not any(option.startswith(("--ServerApp.port_retries", "--port-retries")) for option in options):
            options = ["--ServerApp.port_retries=0", *options]
    from study.kernel import require_project_packages

    require_project_packages()  # this Python is the kernel's: it must be able to run the notebook
    os.environ["JUPYTER_PATH"] = jupyter_path()
    ensure_kernelspec()
    runs_on = kernel_executable()
    if not same_python(runs_on, sys.executable):
        raise SystemExit(f"study.lab: the kernelspec {KERNEL_NAME!r} resolves to {runs_on}, not to {sys.executable}, "
                         f"even with {data_dir()} first on JUPYTER_PATH; see `jupyter kernelspec list`")
    print(f"study.lab: Jupyter Lab on {' and '.join(n.name for n in NOTEBOOKS)} (the first opened), kernel "
          f"{KERNEL_NAME!r} on {sys.executable}", flush=True)
    from jupyterlab.labapp import LabApp

    LabApp.launch_instance(argv=lab_arguments(options))


if __name__ == "__main__":
    main()
