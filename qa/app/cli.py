"""`qa`: the command line on top of the public API (index, ask, stats, eval)."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from qa.errors import QAError
from qa.schema import IndexReport
from qa.settings import BACKENDS, Settings
from qa.text import for_terminal

# What json.dumps(ensure_ascii=False) leaves raw that a terminal acts on: DEL, C1 controls, bidi overrides
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", type=Path, help="index folder (default: vectorstore/, or $QA_INDEX_DIR)")
    common.add_argument("--vector-uri", help="vectors in Milvus: a .db path (Milvus Lite) or http://host:19530")
    common.add_argument("-v", "--verbose", action="store_true", help="log what happens")

    p = argparse.ArgumentParser(prog="qa", description="Ask questions about news articles, with cited answers.")
    sub = p.add_subparsers(dest="command", required=True)

    ix = sub.add_parser("index", parents=[common], help="index new or changed articles (files, folders, URLs)")
    ix.add_argument("paths", nargs="+", help=".txt .md .html .json .jsonl files or folders; RSS/Atom feed or page URLs")
    ix.add_argument("--sync", action="store_true", help="also remove articles whose files are gone")
    ix.add_argument("--quiet", action="store_true", help="print only the summary line")
    ix.add_argument("--ray", metavar="ADDRESS", help="chunk and embed on this Ray cluster (host:port, 'auto')")

    ask = sub.add_parser("ask", parents=[common], help="answer a question with cited passages")
    ask.add_argument("question")
    ask.add_argument("-k", type=int, help="passages to read (default 5)")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.add_argument("--backend", choices=BACKENDS, help="who writes the answer (default: llamacpp)")
    ask.add_argument("--no-stream", action="store_true", help="print the answer only when it is complete")
    ask.add_argument("--source", default="", help="only articles whose source or url contains this")
    ask.add_argument("--since", default="", help="only articles published on or after this ISO date")
    ask.add_argument("--until", default="", help="only articles published on or before this ISO date")
    ask.add_argument(
        "--as-of",
        default=None,
        help="answer as of this date (YYYY-MM-DD; default today): later articles are not "
        "used, and 'this week' means the week before it",
    )

    tl = sub.add_parser("timeline", parents=[common], help="a story's dated events, oldest first, each cited")
    tl.add_argument("topic")
    tl.add_argument("--since", default="", help="only events reported on or after this ISO date")
    tl.add_argument("--until", default="", help="only events reported on or before this ISO date")
    tl.add_argument("--json", action="store_true", help="print one JSON object")

    dg = sub.add_parser("digest", parents=[common], help="the stories that gained articles since a date")
    dg.add_argument("--since", required=True, help="ISO date (YYYY-MM-DD)")
    dg.add_argument("--until", default="", help="ISO date: read as of this day")
    dg.add_argument("--limit", type=int, default=20, help="most stories shown (default 20)")
    dg.add_argument("--json", action="store_true", help="print one JSON object")

    wa = sub.add_parser("watch", parents=[common], help="keep indexing folders and feeds as articles arrive")
    wa.add_argument("dirs", nargs="*", help="folders to watch (recursively); removed files leave the index")
    wa.add_argument("--feed", action="append", default=[], metavar="URL", help="RSS/Atom feed or page (repeatable)")
    wa.add_argument("--every", help="how often to poll the feeds: 30s, 15m, 1h (default 15m, $QA_FEED_EVERY_S)")
    wa.add_argument("--debounce", type=float, help="seconds of quiet before re-indexing (default 1)")

    st = sub.add_parser("stats", parents=[common], help="what the index holds")
    st.add_argument("--json", action="store_true")

    ev = sub.add_parser("eval", parents=[common], help="score quality on an evaluation set (FORMAT.md)")
    ev.add_argument("set_dir", type=Path)
    ev.add_argument("--out", type=Path, help="write the JSON report here")
    ev.add_argument("--limit", type=int, help="only the first N questions")
    ev.add_argument("-k", type=int, help="passages to read (default 5)")
    ev.add_argument("--backend", default="extractive", choices=BACKENDS)
    ev.add_argument("--min-hit5", type=float, help="exit 1 when Hit@5 is below this (a CI regression guard)")
    ev.add_argument("--min-answer", type=float, help="exit 1 when 'answer has gold' is below this (a CI guard)")
    ev.add_argument("--baseline", action="store_true", help="also score the textbook LangChain pipeline")

    sv = sub.add_parser("serve", parents=[common], help="the web chat and HTTP API on http://127.0.0.1:7860")
    sv.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=7860)
    sv.add_argument("--auth", metavar="USER:PASS", help="require this login (visible in `ps`: prefer the next two)")
    sv.add_argument("--auth-file", type=Path, help="a file holding USER:PASS (or set $QA_WEB_AUTH)")
    sv.add_argument("--token-file", type=Path, help="a file holding the API's bearer token (or set $QA_WEB_TOKEN)")
    sv.add_argument("--backend", choices=BACKENDS, help="default answer backend")
    sv.add_argument("--backends", metavar="A,B", help="backends callers may choose (default: --backend and extractive)")
    sv.add_argument("-k", type=int, help="passages to read (default 5)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    overrides = {"index_dir": args.index} if args.index else {}
    if getattr(args, "k", None):
        overrides["k"] = args.k
    if args.vector_uri:
        overrides["vector_uri"] = args.vector_uri
    if getattr(args, "ray", None):
        overrides["ray_address"] = args.ray
    try:
        settings = Settings(**overrides)
        return COMMANDS[args.command](args, settings)
    except KeyboardInterrupt:
        print("qa: interrupted", file=sys.stderr)
        return 130
    except (QAError, ValueError, OSError) as exc:  # ours say what to do; the rest name what failed
        print(f"qa: error: {for_terminal(str(exc))}", file=sys.stderr)
        return 1


def _json(data: object, **kwargs) -> str:
    """JSON for the terminal: the same data, with what json.dumps leaves raw and a terminal would act on escaped
    (\\u009b, ...; control characters below 0x20 json.dumps escapes itself)."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, **kwargs))


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from qa.api import Assistant
    from qa.sources.fetch import is_url

    assistant = Assistant(settings)
    urls = [p for p in args.paths if is_url(p)]
    paths = [p for p in args.paths if not is_url(p)]
    report = assistant.index(paths, sync=args.sync) if paths else None
    if urls:
        from qa.sources.feeds import index_urls

        more = index_urls(urls, assistant.store(create=True), assistant.embedder, settings)
        report = IndexReport.merge(report, more) if report else more
    if not args.quiet:
        from qa.sources.watch import report_lines

        for line in report_lines(report):
            print(for_terminal(line, one_line=True))  # file names and titles may hold ESC, BEL, ...
    print(report.summary())
    nothing_usable = report.rejected and not (report.changed or report.unchanged)
    return 1 if nothing_usable else 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from qa.api import Assistant
    from qa.schema import Answer
    from qa.store import Filters

    filters = Filters(args.source, args.since, args.until)
    stream = Assistant(settings).ask_stream(args.question, filters=filters, backend=args.backend, as_of=args.as_of)
    answer, streamed = None, False
    for item in stream:
        if isinstance(item, Answer):
            answer = item
        elif not args.json and not args.no_stream and sys.stdout.isatty():
            print(for_terminal(item), end="", flush=True)  # the model's words as they come; checked answer follows
            streamed = True
    assert answer is not None
    if args.json:
        print(_json(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    if streamed:
        print("\n")
        if answer.text.strip() != answer.generated_text.strip():
            print("Checked against the sources:")
    print(for_terminal(answer.to_markdown()))  # titles and quotes come from the articles: no raw ESC, BEL, ...
    return 0


def cmd_timeline(args: argparse.Namespace, settings: Settings) -> int:
    from qa.api import Assistant

    found = Assistant(settings).timeline(args.topic, _iso(args.since), _iso(args.until))
    print(_json(found.to_dict(), ensure_ascii=False, indent=2) if args.json else for_terminal(found.to_markdown()))
    return 0


def cmd_digest(args: argparse.Namespace, settings: Settings) -> int:
    from qa.api import Assistant

    digest = Assistant(settings).digest(_iso(args.since), _iso(args.until), args.limit)
    print(_json(digest.to_dict(), ensure_ascii=False, indent=2) if args.json else for_terminal(digest.to_markdown()))
    return 0


def _iso(day: str) -> str:
    """An ISO day as given, or a clear error (dates compare as text in the index)."""
    import datetime as dt

    if not day:
        return ""
    try:
        return dt.date.fromisoformat(day.strip()).isoformat()
    except ValueError:
        raise ValueError(f"'{day}' is not a date: write it as YYYY-MM-DD") from None


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from qa.store import open_store

    stats = open_store(settings).stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        stats["bytes"] = f"{stats['bytes'] / 1e6:.1f} MB"
        width = max(map(len, stats))
        for key, value in stats.items():
            for i, line in enumerate((value or [""]) if isinstance(value, list) else [value]):
                print(for_terminal(f"{key if i == 0 else '':<{width}}  {line}", one_line=True))
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from qa.eval.evaluate import REPORT_KEYS, run_eval

    report = run_eval(args.set_dir, settings, limit=args.limit, backend=args.backend)
    base = None
    if args.baseline:
        from qa.eval.baseline import run_baseline

        base = report["baseline"] = run_baseline(args.set_dir, settings, limit=args.limit)
    print(f"{'metric':<26}{'ours':>10}" + (f"{'baseline':>10}" if base else ""))
    for key in REPORT_KEYS:
        print(f"{key:<26}{report[key]:>10.3f}" + (f"{base[key]:>10.3f}" if base else ""))
    print(
        f"{report['answerable']} answerable, {report['unanswerable']} unanswerable questions; "
        f"backend {report['backend']}, k={report['k']}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    status = 0
    for key, floor in (("hit@5", args.min_hit5), ("answer_contains_gold", args.min_answer)):
        if floor is not None and report[key] < floor:
            print(f"qa: error: {key} {report[key]:.3f} is below the guard {floor}", file=sys.stderr)
            status = 1
    return status


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import SecretStr

    from qa.app.api_models import allowed_backends
    from qa.app.web import serve

    update: dict = {"backend": args.backend} if args.backend else {}
    if args.auth:
        print("qa: warning: --auth is visible to other users in `ps`; use --auth-file or $QA_WEB_AUTH", file=sys.stderr)
        update["web_auth"] = SecretStr(args.auth)
    if args.auth_file:
        update |= {"web_auth_file": args.auth_file, "web_auth": SecretStr("")}
    if args.token_file:
        update |= {"web_token_file": args.token_file, "web_token": SecretStr("")}
    if args.backends is not None:
        update["web_backends"] = args.backends
    settings = settings.model_copy(update=update)
    unknown = [b for b in allowed_backends(settings) if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {', '.join(unknown)} in --backends (choose from {', '.join(BACKENDS)})")
    serve(settings, host=args.host, port=args.port)
    return 0


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from qa.sources.watch import parse_duration, watch

    every_s = parse_duration(args.every) if args.every else None
    watch(args.dirs, settings, feeds=args.feed, every_s=every_s, debounce_s=args.debounce)
    return 0


COMMANDS = {
    "index": cmd_index,
    "ask": cmd_ask,
    "stats": cmd_stats,
    "eval": cmd_eval,
    "serve": cmd_serve,
    "watch": cmd_watch,
    "timeline": cmd_timeline,
    "digest": cmd_digest,
}

if __name__ == "__main__":
    sys.exit(main())
