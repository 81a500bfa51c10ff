"""Finding and loading the kubeconfig as kubectl does (--kubeconfig, $KUBECONFIG merged,
~/.kube/config, in-cluster), checked before the client reads it, and `connect`."""

from __future__ import annotations

import os
from pathlib import Path

from otactl.errors import ConfigError
from otactl.kube.cluster import Cluster
from otactl.kube.connection import KubeTarget


def kubeconfig_files(kubeconfig: Path | None) -> list[Path]:
    """The kubeconfig files to merge, as kubectl finds them: `--kubeconfig` (which must
    exist), else each existing entry of $KUBECONFIG (missing ones are skipped), else
    ~/.kube/config when present."""
    if kubeconfig is not None:
        if not kubeconfig.exists():
            raise ConfigError(f"{kubeconfig}: kubeconfig not found")
        return [kubeconfig]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [
            Path(p).expanduser()
            for p in env.split(os.pathsep)
            if p and Path(p).expanduser().exists()
        ]
    default = Path.home() / ".kube" / "config"
    return [default] if default.exists() else []


def _check_kubeconfig(path: Path) -> list[str]:
    """The context names of one kubeconfig; one line when it is not a kubeconfig."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the kubeconfig: {e.strerror}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not a kubeconfig (not valid YAML)") from e
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("contexts") or [], list):
        raise ConfigError(f"{path}: not a kubeconfig (expected a mapping with contexts)")
    names = []
    for entry in data.get("contexts") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{path}: not a kubeconfig (a context without a name)")
        names.append(entry["name"])
    return names


def connect(kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
    """Connect with `--kubeconfig`, else $KUBECONFIG (its files merged, missing ones skipped,
    as kubectl does), else ~/.kube/config, else the pod's in-cluster service account.
    Nothing is sent yet."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    cfg = client.Configuration()
    files = kubeconfig_files(kubeconfig)
    contexts = [name for path in files for name in _check_kubeconfig(path)]
    joined = os.pathsep.join(str(p) for p in files)
    source = joined
    try:
        if files:
            if context is not None and context not in contexts:
                raise ConfigError(f'context "{context}" does not exist')
            # The client merges the files itself, first file first, as kubectl does.
            config.load_kube_config(
                config_file=joined,
                context=context,
                client_configuration=cfg,
                persist_config=False,
            )
            _, active = config.list_kube_config_contexts(config_file=joined)
            ctx_name = context or (active or {}).get("name")
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
            ctx_name, source = None, "in-cluster service account"
        else:
            raise ConfigError(
                "no cluster configured: pass --kubeconfig, set KUBECONFIG, or start one with "
                "`otactl local-cluster up`"
            )
    except ConfigException as e:
        raise ConfigError(f"cannot use the kubeconfig {source}: {e}") from e
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # The client reads the file's structure without checking it first.
        raise ConfigError(
            f"cannot use the kubeconfig {source}: malformed ({type(e).__name__}: {e})"
        ) from e
    cfg.connection_pool_maxsize = 32
    # Retries are otactl's own (see Cluster.request): urllib3 should fail fast.
    cfg.retries = 0
    return Cluster(client.ApiClient(cfg), KubeTarget(cfg.host, ctx_name, source))
