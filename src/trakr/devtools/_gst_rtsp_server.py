#!/usr/bin/python3
"""GStreamer RTSP test server: serves one Annex-B H.264 file on N mounts, looped, in real time.

Run by :mod:`trakr.devtools.rtsp_server` under Debian's ``/usr/bin/python3`` (``python3-gi`` imports only
there). This file must not import trakr or anything outside the Python standard library and gi.

    /usr/bin/python3 _gst_rtsp_server.py --file clip.h264 [--mounts 4] [--port 0] [--fps 10]

* binds 127.0.0.1 only, on ``--port`` (0 = any free port);
* RTP over RTSP/TCP only (``GstRtsp.RTSPLowerTrans.TCP``): no UDP ports, no loss on loopback;
* mounts ``/cam0`` .. ``/cam{N-1}``, each with its own *shared* media factory, so several clients
  of one mount watch the same pipeline and every mount runs independently;
* pipeline per mount::

      multifilesrc location=FILE loop=true ! h264parse
        ! video/x-h264,stream-format=byte-stream,alignment=au,framerate=FPS/1
        ! rtph264pay name=pay0 pt=96 config-interval=0

  ``h264parse`` timestamps the unstamped elementary stream from the framerate; the media
  pipeline's sink syncs on the clock, so the stream goes out at the clip's real-time rate.
  A pad probe copies DTS into PTS (h264parse sets only DTS here), otherwise clients see
  presentation timestamp 0 on every frame. ``config-interval=0``: the file already carries
  SPS/PPS before every IDR (x264 repeats them in Annex-B output); ``-1`` would send them twice and
  FFmpeg clients then report a duplicated timestamp at every keyframe;
* prints ``PORT <n>`` on stdout once it is listening; exits on SIGTERM/SIGINT, or when its stdin
  reaches EOF with ``--watch-stdin`` (i.e. when the parent process died), so it never outlives
  the test that started it. Exit codes: 2 bad arguments/file, 3 cannot listen, 4 gi missing.
"""

import argparse
import os
import signal
import sys

EXIT_BIND = 3  # could not listen on the port (trakr.rtsp_server retries this one on restart)
EXIT_DEPS = 4  # gi / GStreamer RTSP server bindings missing

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
except (ImportError, ValueError) as _exc:
    print(
        f"GStreamer RTSP server bindings not importable under {sys.executable}: {_exc} "
        "(needs Debian's /usr/bin/python3 with: apt-get install python3-gi "
        "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
        "gstreamer1.0-plugins-bad)",
        file=sys.stderr,
    )
    sys.exit(EXIT_DEPS)


def _dts_to_pts(pad, info):
    buf = info.get_buffer()
    if buf is not None and buf.pts == Gst.CLOCK_TIME_NONE and buf.dts != Gst.CLOCK_TIME_NONE:
        buf.pts = buf.dts
    return Gst.PadProbeReturn.OK


class Factory(GstRtspServer.RTSPMediaFactory):
    """Shared, TCP-only media factory that adds the DTS->PTS probe to every pipeline it makes."""

    def __init__(self, launch):
        super().__init__()
        self.set_launch(launch)
        self.set_shared(True)
        self.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
        self.set_eos_shutdown(False)
        self.connect("media-configure", self._on_media_configure)

    @staticmethod
    def _on_media_configure(_factory, media):
        element = media.get_element()
        parse = element.get_by_name("parse")
        if parse is not None:
            parse.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, _dts_to_pts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", required=True, help="Annex-B H.264 elementary stream")
    ap.add_argument("--mounts", type=int, default=4)
    ap.add_argument("--port", type=int, default=0, help="0 = any free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--fps", type=int, default=10, help="frame rate of the file")
    ap.add_argument(
        "--watch-stdin", action="store_true",
        help="exit when stdin reaches EOF (the parent passes a pipe and never writes to it)",
    )
    args = ap.parse_args(argv)

    if not os.path.isfile(args.file):
        print(f"no such file: {args.file}", file=sys.stderr)
        return 2

    Gst.init(None)
    loop = GLib.MainLoop()

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    location = args.file.replace("\\", "\\\\").replace('"', '\\"')
    launch = (
        f'( multifilesrc location="{location}" loop=true ! h264parse name=parse '
        f"! video/x-h264,stream-format=byte-stream,alignment=au,framerate={args.fps}/1 "
        "! rtph264pay name=pay0 pt=96 config-interval=0 )"
    )
    mounts = server.get_mount_points()
    for i in range(args.mounts):
        mounts.add_factory(f"/cam{i}", Factory(launch))

    try:
        server.attach(None)
    except GLib.Error as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.message}", file=sys.stderr)
        return EXIT_BIND
    # attach() returns 0 (and prints a GStreamer warning) when the bind fails.
    port = server.get_bound_port()
    if port <= 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return EXIT_BIND

    def _quit(*_a):
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, _quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, _quit)

    def _stdin_event(_fd, _cond):
        # Parent holds our stdin open; EOF or error means it has gone.
        try:
            data = os.read(sys.stdin.fileno(), 4096)
        except OSError:
            data = b""
        if not data:
            loop.quit()
            return GLib.SOURCE_REMOVE
        return GLib.SOURCE_CONTINUE

    if args.watch_stdin:
        GLib.unix_fd_add_full(
            GLib.PRIORITY_DEFAULT, sys.stdin.fileno(), GLib.IOCondition.IN | GLib.IOCondition.HUP,
            _stdin_event,
        )

    print(f"PORT {port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
