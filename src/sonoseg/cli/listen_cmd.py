"""``sonoseg listen``: receive ultrasound over DICOM, segment each study when complete, send the SEGs on."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from sonoseg.cli._common import THREADS_OPTION, console, handle_errors
from sonoseg.cli.pacs_cmd import SERVERS


def register(app: typer.Typer) -> None:
    @app.command("listen")
    @handle_errors
    def listen_cmd(
        ae_title: str = typer.Option("SONOSEG", "--ae-title", help="Our AE title (the PACS sends to it)."),
        port: int = typer.Option(11112, "--port", min=1, max=65535, help="DICOM port."),
        host: str = typer.Option("127.0.0.1", "--host", help="Bind address (0.0.0.0 to receive from other machines)."),
        allow: List[str] = typer.Option([], "--allow", help="Calling AE title allowed to send (repeat; default: any)."),
        send_to: List[str] = typer.Option([], "--send-to", help="Server name (from --servers) that receives the SEGs "
                                                               "(repeat for several)."),
        via: Optional[str] = typer.Option(None, "--via", help="dimse | dicomweb for --send-to (default: DIMSE when "
                                                              "the server has a port)."),
        store: bool = typer.Option(False, "--store/--no-store", help="Also queue the images in the results store "
                                                                    "of `sonoseg serve` (--data / --db)."),
        data: Optional[Path] = typer.Option(None, "--data", help="Results store folder (as for `sonoseg serve`)."),
        db: Optional[str] = typer.Option(None, "--db", help="Results store database URL (as for `sonoseg serve`)."),
        work: Path = typer.Option(Path("sonoseg-listener"), "--work", help="Received instances and predict outputs."),
        quiet: float = typer.Option(10.0, "--quiet-period", min=0.0, help="Seconds without a new instance after "
                                                                          "which a study is complete."),
        max_pending: int = typer.Option(2000, "--max-pending", min=1, help="Instances waiting to be segmented; past "
                                                                            "it senders are told to retry later."),
        model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model file, or fast | accurate | v3 (default: accurate)."),
        backend: str = typer.Option("auto", help="auto | torch | onnx | onnx-int8 ..."),
        threads: Optional[int] = THREADS_OPTION,
        domain: bool = typer.Option(True, "--domain-check/--no-domain-check",
                                    help="No SEG for images unlike the model's training images."),
        keep: bool = typer.Option(False, "--keep-received", help="Keep received instances after segmenting "
                                                                   "(in WORK/kept/)."),
        overlay_sc: bool = typer.Option(False, "--overlay-sc", help="Also send the overlay as a DICOM Secondary "
                                                                    "Capture (viewers without SEG support)."),
        retry: float = typer.Option(60.0, "--retry-after", min=0.1, help="Seconds before re-sending to a destination "
                                                                         "that failed (then doubling, up to an hour)."),
        keep_results: float = typer.Option(0.0, "--keep-results", min=0.0,
                                           help="Hours to keep a study's results (WORK/results) once every "
                                                "destination has them (0: remove at once; inf: never). Without a "
                                                "destination they are kept."),
        tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="DICOM TLS: our certificate (PEM)."),
        tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="DICOM TLS: its private key (PEM)."),
        tls_ca: Optional[Path] = typer.Option(None, "--tls-ca", help="DICOM TLS: senders must show a certificate "
                                                                    "signed by this CA (PEM)."),
        servers: Optional[Path] = SERVERS,
    ) -> None:
        """C-STORE SCP: each study is segmented after --quiet-period seconds without new instances; its
        SEGs go to every --send-to server and the images to the results store with --store. A destination
        that fails gets the same SEGs again later (--retry-after), the others nothing twice. Ctrl-C stops
        (what has arrived is segmented first)."""
        import logging
        import signal
        import threading

        from sonoseg.infer.options import ModelOptions
        from sonoseg.infer.predictor import Predictor
        from sonoseg.models.shipped import resolve_model
        from sonoseg.pacs.listener import Listener, ListenerSettings

        tls = _tls_settings(tls_cert, tls_key, tls_ca)
        sinks = _sinks(send_to, via, servers, store, data, db)
        if not sinks:
            console.print("[yellow]warning:[/] no --send-to and no --store: SEGs are only written under "
                          f"{work / 'results'}")
        logging.getLogger("sonoseg.pacs").setLevel(logging.INFO)
        _show_info()
        predictor = Predictor.from_path(resolve_model(model, "listen"), ModelOptions(backend=backend, threads=threads))
        settings = ListenerSettings(work_dir=work, ae_title=ae_title, host=host, port=port, allowed_aets=tuple(allow),
                                    quiet_s=quiet, max_pending=max_pending, keep_received=keep, domain=domain,
                                    retry_s=retry, overlay_sc=overlay_sc, tls=tls,
                                    keep_results_s=keep_results * 3600.0)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        listener = Listener(settings, predictor, sinks).start()
        console.print(f"sonoseg listen: {ae_title} on {host}:{port}; sending to "
                      f"{', '.join(s.name for s in sinks) or 'nowhere'}; Ctrl-C stops")
        try:
            stop.wait()
        finally:
            console.print("stopping: segmenting what has arrived ...")
            listener.stop(flush=True)
            for s in sinks:
                getattr(s, "close", lambda: None)()
            _print_summary(listener, work)


def _tls_settings(cert: Optional[Path], key: Optional[Path], ca: Optional[Path]):
    """DICOM TLS settings from the three flags (None without any); a certificate needs its key."""
    if not (cert or key or ca):
        return None
    if not (cert and key):
        from sonoseg.cli._common import fail

        fail("DICOM TLS needs --tls-cert and --tls-key (and optionally --tls-ca)")
    from sonoseg.pacs.tls import TlsSettings

    return TlsSettings.parse({"cert_file": cert, "key_file": key, "ca_file": ca}, "listen")


def _sinks(send_to: List[str], via: Optional[str], servers: Optional[Path], store: bool, data: Optional[Path],
           db: Optional[str]) -> list:
    """Where the results go: each --send-to server (DIMSE or DICOMweb), and the results store with --store."""
    from sonoseg.pacs import server
    from sonoseg.pacs.sinks import PacsSink, StoreSink

    sinks = [PacsSink(server(n, servers), via) for n in send_to]
    if store:
        from sonoseg.serve.settings import Settings

        st = Settings.from_env(data, db)
        sinks.append(StoreSink(st.data_dir, st.db_url))
    return sinks


def _print_summary(listener, work: Path) -> None:
    """What the listener did, and the study batches still waiting for a destination (sent at the next start)."""
    st = listener.stats
    console.print(f"{st.received} instance(s) received, {st.segmented} segmented, {st.segs_sent} SEG(s) sent, "
                  f"{st.refused} refused, {st.failures} failure(s)"
                  + (f", {st.duplicates} already segmented" if st.duplicates else "")
                  + (f", {st.rejected} association(s) rejected" if st.rejected else ""))
    waiting = listener.waiting
    if waiting:
        console.print(f"{len(waiting)} study batch(es) not yet sent to "
                      f"{', '.join(sorted({n for d in waiting for n in d.pending}))}: kept in "
                      f"{work / 'outbox'}, sent at the next start")


def _show_info() -> None:
    """The listener's INFO lines (one per study) on the terminal, unless --quiet."""
    import logging

    from sonoseg.cli._common import console

    if console.quiet:
        return
    for h in logging.getLogger().handlers:
        if getattr(h, "_sonoseg_cli", False) and h.level > logging.INFO and not isinstance(h, logging.FileHandler):
            h.addFilter(lambda rec: rec.levelno >= logging.WARNING or rec.name.startswith("sonoseg.pacs"))
            h.setLevel(logging.INFO)
    logging.getLogger().setLevel(min(logging.getLogger().level or logging.INFO, logging.INFO))
