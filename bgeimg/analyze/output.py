"""Rich rendering of reports and comparisons: a table with a size bar per row and a one-line verdict."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

BAR = 16


def human(n: int | float | None) -> str:
    """Decimal units, as `docker images` prints them (1 MB = 10^6 bytes)."""
    if n is None:
        return "?"
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1000
    return f"{sign}{n} B"


def signed(n: int | None) -> str:
    if n is None:
        return "?"
    return ("+" if n > 0 else "") + human(n) if n else "0"


def bar(value: int | None, biggest: int, width: int = BAR) -> Text:
    if not value or not biggest:
        return Text("")
    cells = max(1, round(width * value / biggest))
    return Text("█" * cells, style="cyan")


def pct(x: float) -> str:
    """An efficiency as a percentage that never rounds a loss up to 100%."""
    text = f"{x:.2%}"
    return ">99.99%" if x < 1 and text == "100.00%" else text


def _short(text: str | None, width: int = 70) -> str:
    if not text:
        return "(no history)"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def verdict(report, gates) -> str:
    size = human(report.size) if report.size is not None else f"{human(report.compressed_size)} compressed"
    parts = [f"{report.ref} ({report.platform}): {size} in {len(report.layers)} layers"]
    if report.waste:
        parts.append(f"{human(report.waste.wasted_bytes)} wasted, {pct(report.waste.efficiency)} efficient")
    biggest = max(report.categories.items(), key=lambda kv: kv[1])
    if biggest[1]:
        text = f"most is {biggest[0]} ({human(biggest[1])})"
        if report.packages and biggest[0] == "Python dependencies":
            text += ": " + ", ".join(f"{p.name} {human(p.size)}" for p in report.packages[:3])
        parts.append(text)
    failed = [g for g in gates if not g.passed]
    head = "FAIL" if failed else "PASS" if gates else "OK"
    return f"{head}: " + "; ".join(parts) + (" — " + "; ".join(g.message for g in failed) if failed else "")


def render_report(report, gates, console: Console) -> None:
    sizes = [(layer.size if layer.size is not None else layer.compressed_size) or 0 for layer in report.layers]
    biggest = max(sizes, default=0)
    note = "" if report.files_scanned else " · compressed sizes"
    table = Table(title=f"{escape(report.ref)}  [dim]{report.source} · {report.platform}{note}[/]",
                  title_justify="left")
    # Every width fixed: rich would otherwise squeeze the narrow columns to nothing before the long ones.
    wide = console.width >= 110
    bar_w = BAR if wide else 8
    table.add_column("#", justify="right", width=3, no_wrap=True)
    table.add_column("size", justify="right", width=9, no_wrap=True)
    table.add_column("", width=bar_w, no_wrap=True)
    table.add_column("category", width=19, no_wrap=True)
    rest = max(console.width - (3 + 9 + bar_w + 19) - (19 if wide else 16), 16)  # borders and padding
    ins_w = min(max(rest * 3 // 5, 16), 70) if wide else rest
    file_w = min(max(rest - ins_w, 14), 70)
    table.add_column("instruction", width=ins_w, no_wrap=True, overflow="ellipsis")
    if wide:
        table.add_column("biggest file", width=file_w, no_wrap=True, overflow="ellipsis")
    for layer, size in zip(report.layers, sizes):
        label = human(layer.size) if layer.size is not None else human(layer.compressed_size)
        top = layer.top_files[0] if layer.top_files else None
        row = [str(layer.index), label, bar(size, biggest, bar_w), layer.category, _short(layer.instruction, ins_w)]
        if wide:
            row.append(f"{top.path} {human(top.size)}" if top else "")
        table.add_row(*row)
    console.print(table)
    ours = {k[len("io.bgeimg."):]: v for k, v in report.labels.items() if k.startswith("io.bgeimg.") and v}
    if ours:  # an image bgeimg built: say what it is
        console.print("bgeimg image: " + ", ".join(f"{k}={v}" for k, v in sorted(ours.items())), highlight=False)

    cats = Table("category", "size", "", title="by category", title_justify="left")
    top_cat = max(report.categories.values(), default=0)
    for name, size in report.categories.items():
        if size:
            cats.add_row(name, human(size), bar(size, top_cat))
    parts = [cats]
    if report.packages:
        pk = Table("Python distribution", "version", "size", "", title="biggest Python distributions",
                   title_justify="left")
        top_pk = report.packages[0].size
        for p in report.packages[:10]:
            pk.add_row(p.name, p.version, human(p.size), bar(p.size, top_pk))
        parts.append(pk)
    if report.waste and report.waste.files:
        w = Table("path", "copies", "wasted", "layers", "how", title="wasted (hidden by later layers)",
                  title_justify="left")
        for f in report.waste.files[:10]:
            how = f"deleted in layer {f.removed_in}" if f.removed_in is not None else "overwritten"
            if f.path.endswith("/"):
                how = f"directory deleted in layer {f.removed_in}"
            w.add_row(f.path, str(f.copies), human(f.wasted), ",".join(map(str, f.layers)), how)
        parts.append(w)
    console.print(Group(*parts))
    if report.waste:
        wst = report.waste
        console.print(f"wasted: {human(wst.wasted_bytes)} (efficiency {pct(wst.efficiency)}); "
                      f"dive would report {human(wst.dive_wasted_bytes)} (efficiency {pct(wst.dive_efficiency)}, "
                      "it counts every copy)", highlight=False)
    else:
        console.print("layers not downloaded from this source: sizes are compressed, no files or waste",
                      style="dim")
    for w in report.warnings:
        console.print(f"note: {w}", style="yellow", highlight=False)
    for g in gates:
        console.print(("[green]pass[/] " if g.passed else "[red]FAIL[/] ") + g.message, highlight=False)
    console.print(verdict(report, gates), style="bold", highlight=False, soft_wrap=True)


def render_comparison(cmp, gates, console: Console) -> None:
    a, b = cmp.a, cmp.b
    t = Table("", a.ref, b.ref, "difference", "", title="side by side", title_justify="left")
    rows = [r for r in cmp.totals if r.a is not None or r.b is not None] + [r for r in cmp.categories if r.a or r.b]
    biggest = max((abs(r.diff or 0) for r in rows if r.name != "layers"), default=0)
    for r in rows:
        fmt = (lambda v: str(v)) if r.name == "layers" else human
        t.add_row(r.name, fmt(r.a), fmt(r.b), str(r.diff) if r.name == "layers" else signed(r.diff),
                  "" if r.name == "layers" else bar(abs(r.diff or 0), biggest))
    console.print(t)
    console.print(f"shared layers: {len(cmp.shared_layers)} ({human(cmp.shared_bytes)})", highlight=False)
    if cmp.only_a_packages or cmp.only_b_packages or cmp.changed_packages:
        p = Table("package", a.ref, b.ref, "difference", title="Python distributions that differ",
                  title_justify="left")
        for c in (cmp.changed_packages + cmp.only_a_packages + cmp.only_b_packages)[:20]:
            p.add_row(c.name, f"{c.version_a} {human(c.size_a)}" if c.version_a is not None else "—",
                      f"{c.version_b} {human(c.size_b)}" if c.version_b is not None else "—", signed(c.diff))
        console.print(p)
    if cmp.differing_files:
        f = Table("path", a.ref, b.ref, "difference", title="biggest files that differ", title_justify="left")
        for r in cmp.differing_files:
            f.add_row(r.name, human(r.a) if r.a is not None else "—", human(r.b) if r.b is not None else "—",
                      signed(r.diff))
        console.print(f)
    for g in gates:
        console.print(("[green]pass[/] " if g.passed else "[red]FAIL[/] ") + g.message, highlight=False)
    size_a = a.size if a.size is not None else a.compressed_size
    size_b = b.size if b.size is not None else b.compressed_size
    diff = None if size_a is None or size_b is None else size_b - size_a
    failed = [g for g in gates if not g.passed]
    head = "FAIL" if failed else "PASS" if gates else "OK"
    console.print(f"{head}: {b.ref} is {signed(diff)} against {a.ref} ({human(size_a)} -> {human(size_b)})"
                  + (" — " + "; ".join(g.message for g in failed) if failed else ""), style="bold",
                  highlight=False, soft_wrap=True)


def render_advice(advice, console: Console) -> None:
    """The findings, biggest first, each with where it is and its fix; then the floor."""
    def section(title: str, findings) -> None:
        console.print(Text(title, style="bold"))
        for f in findings:
            saves = human(f.bytes) if f.bytes else "start time"
            console.print(Text.assemble((f"{saves:>10}  ", "cyan"), f.title, f"  [{f.kind}]"), soft_wrap=True)
            where = ", ".join(f.paths) + (f" (… {f.files} files)" if f.files > len(f.paths) else "")
            console.print(Text(f"            where: {where}"), soft_wrap=True)
            console.print(Text(f"            fix:   {f.fix}"), soft_wrap=True)
            if f.deliberate:
                console.print(Text(f"            deliberate: {f.deliberate}", style="dim"), soft_wrap=True)

    if advice.findings:
        section("advice: inside the layers this image added", advice.findings)
    else:
        console.print(Text("advice: no findings in the layers this image added", style="bold"))
    if advice.base_findings:
        section("in the base image (FROM): a slimmer base removes these", advice.base_findings)
    for note in advice.notes:
        console.print(f"note: {escape(note)}")
    if advice.rehearsal:
        r = advice.rehearsal
        console.print(f"rehearsed start: {r['modules']} Python modules imported, ready ({r['ready']}) after "
                      f"{r['seconds']:.1f} s", highlight=False)
    actionable = len(advice.actionable)
    deliberate = len(advice.findings) - actionable
    console.print(f"floor {human(advice.floor)} (base {human(advice.base_size)} + what the server needs); "
                  f"image {human(advice.size)} = {advice.ratio:.3f}x the floor; {actionable} finding"
                  f"{'' if actionable == 1 else 's'} to fix" + (f", {deliberate} deliberate" if deliberate else ""),
                  highlight=False, soft_wrap=True)
