"""Image commands: pull, push, images, rmi, tag, search, login, logout, image inspect (and the `image` group)."""

from __future__ import annotations

import sys
import threading

from sandbox.cli.params import Argument, Option
from sandbox.cli.render import (
    docker_time,
    err,
    escape,
    human_size,
    json_line,
    listing_template_given,
    out,
    parse_time,
    since,
    table,
    truncate,
)


def _service():
    from sandbox.config import load_settings
    from sandbox.service.images import ImageService

    return ImageService(load_settings())


# -- pull ---------------------------------------------------------------------------------------------------------


class _PlainPullEvents:
    """Docker's non-terminal pull output: one line per layer state change."""

    _WORDS = {
        "waiting": "Pulling fs layer",
        "exists": "Already exists",
        "verifying": "Verifying Checksum",
        "downloaded": "Download complete",
        "extracting": "Extracting",
        "extracted": "Pull complete",
    }

    def __init__(self, quiet: bool, write=out) -> None:
        self.quiet = quiet
        self.write = write
        self.lock = threading.Lock()

    def resolved(self, ref, default_tag: bool) -> None:
        if self.quiet:
            return
        if default_tag:
            self.write("Using default tag: latest")
        self.write(f"{ref.tag if ref.tag and not ref.digest else ref.digest}: Pulling from {ref.repository}")

    def layer(self, digest, size: int, state: str) -> None:
        word = self._WORDS.get(state)
        if self.quiet or word is None:
            return
        with self.lock:
            self.write(f"{digest.short}: {word}")
            sys.stdout.flush()

    def progress(self, digest, done: int, total: int) -> None:
        return None

    def notice(self, text: str) -> None:
        with self.lock:
            err(f"sbx: {escape(text)}")

    def close(self) -> None:
        return None


class _TerminalPullEvents(_PlainPullEvents):
    """A progress bar per layer, drawn by rich, on a terminal."""

    def __init__(self, stream) -> None:
        super().__init__(quiet=False)
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self.progress_bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=40),
            DownloadColumn(binary_units=False),
            console=Console(file=stream, highlight=False),
            transient=False,
        )
        self.tasks: dict = {}
        self.progress_bars.start()

    def resolved(self, ref, default_tag: bool) -> None:
        if default_tag:
            self.progress_bars.console.print("Using default tag: latest", markup=False)
        what = ref.tag if ref.tag and not ref.digest else ref.digest
        self.progress_bars.console.print(f"{what}: Pulling from {ref.repository}", markup=False)

    def layer(self, digest, size: int, state: str) -> None:
        label = {
            "waiting": "Waiting",
            "downloading": "Downloading",
            "exists": "Already exists",
            "verifying": "Verifying Checksum",
            "downloaded": "Download complete",
            "extracting": "Extracting",
            "extracted": "Pull complete",
        }[state]
        with self.lock:
            task = self.tasks.get(digest)
            if task is None:
                task = self.tasks[digest] = self.progress_bars.add_task(f"{digest.short}: {label}", total=size)
            done = size if state in ("exists", "downloaded", "extracting", "extracted") else None
            self.progress_bars.update(task, description=f"{digest.short}: {label:<18}", completed=done)

    def progress(self, digest, done: int, total: int) -> None:
        task = self.tasks.get(digest)
        if task is not None:
            self.progress_bars.update(task, completed=done)

    def close(self) -> None:
        self.progress_bars.stop()


def pull(
    image: str = Argument(..., metavar="NAME[:TAG|@DIGEST]"),
    quiet: bool = Option(False, "--quiet", "-q", help="Suppress verbose output."),
    platform: str = Option(None, "--platform", help="Set platform if server is multi-platform capable."),
) -> None:
    """Download an image from a registry."""
    pull_image(image, quiet=quiet, platform=platform)


def pull_image(image: str, *, quiet: bool = False, platform: str | None = None, to_stderr: bool = False) -> None:
    """Pull with Docker's output; shared by `pull` and `run` (which keeps stdout for the container: to_stderr)."""
    service = _service()
    write = err if to_stderr else out
    stream = sys.stderr if to_stderr else sys.stdout
    events = _TerminalPullEvents(stream) if not quiet and stream.isatty() else _PlainPullEvents(quiet, write)
    try:
        result = service.pull(image, platform=platform, events=events)
    finally:
        events.close()
    ref = result.reference
    shown = ref.familiar_name + (f"@{ref.digest}" if ref.digest else f":{ref.tag}")
    if not quiet:
        write(f"Digest: {result.digest}")
        if result.up_to_date:
            write(f"Status: Image is up to date for {shown}")
        else:
            write(f"Status: Downloaded newer image for {shown}")
    if not to_stderr:
        write(ref.name + (f"@{ref.digest}" if ref.digest else f":{ref.tag}"))


# -- push ---------------------------------------------------------------------------------------------------------


def push(
    image: str = Argument(..., metavar="NAME[:TAG]"),
    quiet: bool = Option(False, "--quiet", "-q", help="Suppress verbose output."),
) -> None:
    """Upload an image to a registry."""
    from sandbox.oci.reference import Reference

    ref = Reference.parse(image)
    if not quiet:
        out(f"The push refers to repository [{ref.name}]")

    def on_layer(digest, state: str) -> None:
        if quiet:
            return
        if state == "exists":
            out(f"{digest.short}: Layer already exists")
        elif state == "pushed":
            out(f"{digest.short}: Pushed")

    result = _service().push(image, on_layer=on_layer)
    if quiet:
        out(f"{ref.name}:{ref.tag}")
    else:
        out(f"{ref.tag}: digest: {result.digest} size: {result.size}")


# -- images -------------------------------------------------------------------------------------------------------


def images(
    repository: str = Argument(None, metavar="[REPOSITORY[:TAG]]"),
    all_images: bool = Option(False, "--all", "-a", help="Show all images (sbx keeps no intermediate images)."),
    quiet: bool = Option(False, "--quiet", "-q", help="Only show image IDs."),
    digests: bool = Option(False, "--digests", help="Show digests."),
    no_trunc: bool = Option(False, "--no-trunc", help="Don't truncate output."),
    filters: list[str] = Option([], "--filter", "-f", help="Filter output (reference=PATTERN)."),
    output_format: str = Option(
        "table", "--format", help="table, json, or a Go template (e.g. 'table {{.Repository}}\\t{{.Tag}}')."
    ),
) -> None:
    """List images."""
    template = listing_template_given(output_format)
    filters = list(filters)
    if repository:
        filters.append(f"reference={repository}")
    service = _service()
    rows = service.rows(filters=filters)
    damage = service.damage(rows)
    _list_images(rows, quiet=quiet, digests=digests, no_trunc=no_trunc, output_format=output_format,
                 template=template)
    if damage is not None:
        raise damage  # after the listing: the sound images are still shown, and the exit code says the rest


def _list_images(rows, *, quiet: bool, digests: bool, no_trunc: bool, output_format: str, template: bool) -> None:
    def image_id(record) -> str:
        return str(record.id) if no_trunc else record.id.short

    if quiet:
        seen: list[str] = []
        for row in rows:
            if image_id(row.record) not in seen:
                seen.append(image_id(row.record))
        for item in seen:
            out(item)
        return
    if template:
        from sandbox.cli.formatting import write_listing

        write_listing(output_format, [image_fields(row, image_id(row.record)) for row in rows], IMAGES_HEADERS)
        return
    if output_format == "json":
        for row in rows:
            out(json_line(image_fields(row, image_id(row.record))))
        return
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + ["IMAGE ID", "CREATED", "SIZE"]
    lines = []
    for row in rows:
        line = [row.repository, row.tag]
        if digests:
            line.append(row.digest)
        line += [image_id(row.record), since(parse_time(row.record.created)), human_size(row.record.size)]
        lines.append(line)
    out(table(headers, lines))


# Docker's images columns: the fields a --format template reaches and their table headers
IMAGES_HEADERS = {
    "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE",
    "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
}


def image_fields(row, image_id: str) -> dict:
    """One image as Docker's images template and JSON lines see it."""
    created = parse_time(row.record.created)
    return {
        "Containers": "N/A",
        "CreatedAt": docker_time(created),
        "CreatedSince": since(created),
        "Digest": row.digest,
        "ID": image_id,
        "Repository": row.repository,
        "SharedSize": "N/A",
        "Size": human_size(row.record.size),
        "Tag": row.tag,
        "UniqueSize": "N/A",
        "VirtualSize": human_size(row.record.size),
    }


def _check_format(output_format: str) -> None:
    if output_format not in ("table", "json"):
        from sandbox.errors import SbxError

        raise SbxError(f"unsupported format {output_format!r}", hint="use --format table or --format json")


# -- rmi, tag -----------------------------------------------------------------------------------------------------


def rmi(
    names: list[str] = Argument(..., metavar="IMAGE [IMAGE...]"),
    force: bool = Option(False, "--force", "-f", help="Force removal of the image."),
) -> None:
    """Remove one or more images."""
    from sandbox.cli.main import report
    from sandbox.errors import SbxError

    service = _service()
    failed = 0
    for name in names:
        try:
            removal = service.remove(name, force=force)
        except SbxError as exc:
            failed = report(exc)
            continue
        for item in removal.untagged:
            out(f"Untagged: {item}")
        for item in removal.deleted:
            out(f"Deleted: {item}")
    if failed:
        raise SystemExit(failed)


def tag(
    source: str = Argument(..., metavar="SOURCE_IMAGE[:TAG]"),
    target: str = Argument(..., metavar="TARGET_IMAGE[:TAG]"),
) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    _service().tag(source, target)


# -- search -------------------------------------------------------------------------------------------------------


def search(
    term: str = Argument(..., metavar="TERM"),
    limit: int = Option(25, "--limit", help="Max number of search results."),
    no_trunc: bool = Option(False, "--no-trunc", help="Don't truncate output."),
    output_format: str = Option("table", "--format", help="table or json."),
) -> None:
    """Search a registry for images (Docker Hub's search, or a registry's catalog)."""
    _check_format(output_format)
    if limit < 1 or limit > 100:
        from sandbox.errors import SbxError

        raise SbxError(f"invalid limit {limit}", hint="the limit must be between 1 and 100")
    results = _service().search(term, limit=limit)
    if output_format == "json":
        for item in results:
            out(
                json_line(
                    {
                        "Name": escape(item["name"]),
                        "Description": escape(item["description"]),
                        "StarCount": str(item["stars"]),
                        "IsOfficial": "true" if item["official"] else "false",
                    }
                )
            )
        return
    rows = []
    for item in results:
        description = escape(" ".join(item["description"].split()))
        if not no_trunc:
            description = truncate(description, 45)
        rows.append([item["name"], description, str(item["stars"]), "[OK]" if item["official"] else ""])
    out(table(["NAME", "DESCRIPTION", "STARS", "OFFICIAL"], rows))


# -- login, logout ------------------------------------------------------------------------------------------------


def login(
    server: str = Argument(None, metavar="[SERVER]"),
    username: str = Option(None, "--username", "-u", help="Username."),
    password: str = Option(None, "--password", "-p", help="Password."),
    password_stdin: bool = Option(False, "--password-stdin", help="Take the password from stdin."),
) -> None:
    """Log in to a registry (credentials are kept in a 0600 file)."""
    from sandbox.errors import SbxError

    if password is not None and password_stdin:
        raise SbxError("--password and --password-stdin are mutually exclusive")
    if password is not None:
        err("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    if password_stdin:
        if username is None:
            raise SbxError("must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    if username is None:
        if not sys.stdin.isatty():
            raise SbxError("cannot ask for a username: stdin is not a terminal", hint="use --username")
        username = input("Username: ").strip()
    if password is None:
        if not sys.stdin.isatty():
            raise SbxError("cannot ask for a password: stdin is not a terminal", hint="use --password-stdin")
        import getpass

        password = getpass.getpass("Password: ")
    if not username or not password:
        raise SbxError("username and password are required")
    _service().login(server, username, password)
    out("Login Succeeded")


def logout(server: str = Argument(None, metavar="[SERVER]")) -> None:
    """Log out from a registry."""
    registry, removed = _service().logout(server)
    if removed:
        out(f"Removing login credentials for {registry}")
    else:
        out(f"Not logged in to {registry}")


# -- inspect ------------------------------------------------------------------------------------------------------


def image_inspect(
    names: list[str] = Argument(..., metavar="IMAGE [IMAGE...]"),
    output_format: str = Option(None, "--format", "-f", help="Format the output using a Go template, or json."),
) -> None:
    """Display detailed information on one or more images."""
    from sandbox.cli.containers import inspect_each

    inspect_each(names, _service().inspect, output_format)
