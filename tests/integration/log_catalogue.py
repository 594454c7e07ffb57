# SPDX-License-Identifier: MIT
"""The log line catalogue's source side: every log_debug/log_info/log_warn/
log_err/log_msg call in core/ proto/ store/ admin/, as (file, line, level,
shape). A shape is the call's format string with each conversion written as
a placeholder: "..." for text, "N" for a number. etc/man/etrnd-log.7 lists
every shape (test_logs.py checks it); run as a script to print the shapes not
yet there (or, with --all, every one, grouped by file, in the page's form).

  python3 log_catalogue.py SOURCE_DIR [--all]
"""

import os
import re
import sys

DIRS = ("core", "proto", "store", "admin")
CALL_RE = re.compile(r"\blog_(debug|info|warn|err|msg)\s*\(")
STR_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
CONV_RE = re.compile(r"%[-+ #0]*(\*|\d+)?(\.(\*|\d+))?(hh|h|ll|l|z|j|t)?([diouxXfFeEgGcsp%])")
PRI_RE = re.compile(r'"\s*PRI[diux](8|16|32|64|MAX|PTR)\s*"')
LEVEL_OF_MSG = {"LOGL_DEBUG": "debug", "LOGL_INFO": "info", "LOGL_WARN": "warning",
                "LOGL_ERR": "error"}
LEVEL = {"debug": "debug", "info": "info", "warn": "warning", "err": "error"}
# log.c's own plumbing: the format is a variable, not a line type.
SKIP = {("core/log.c", "panic: %s: %s")}


def call_args(text, start):
    """The text between the call's parentheses (start: after '(')."""
    depth, i, in_str = 1, start, None
    while i < len(text) and depth:
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == in_str:
                in_str = None
        elif c in "\"'":
            in_str = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        i += 1
    return text[start:i - 1]


def split_top(args):
    """Split at top-level commas."""
    out, depth, cur, in_str, i = [], 0, [], None, 0
    while i < len(args):
        c = args[i]
        cur.append(c)
        if in_str:
            if c == "\\":
                cur.append(args[i + 1])
                i += 1
            elif c == in_str:
                in_str = None
        elif c in "\"'":
            in_str = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            cur.pop()
            out.append("".join(cur))
            cur = []
        i += 1
    out.append("".join(cur))
    return [a.strip() for a in out]


def literal(expr):
    """The concatenated string literals of a format argument, or None."""
    expr = PRI_RE.sub("u", expr)
    parts = STR_RE.findall(expr)
    if not parts:
        return None
    s = "".join(parts)
    return bytes(s, "utf-8").decode("unicode_escape")


def shape(fmt):
    def conv(m):
        c = m.group(5)
        if c == "%":
            return "%"
        if c in "sc":
            return "..."
        if c == "p":
            return "0x..."
        return "N"
    return CONV_RE.sub(conv, fmt)


def calls(srcdir):
    """Every log call: (path, line, level, shape), in file order."""
    for d in DIRS:
        for root, _, files in sorted(os.walk(os.path.join(srcdir, d))):
            for name in sorted(files):
                if not name.endswith(".c"):
                    continue
                path = os.path.join(root, name)
                rel = os.path.relpath(path, srcdir)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                for m in CALL_RE.finditer(text):
                    if text[:m.start()].rstrip().endswith("define"):
                        continue
                    args = split_top(call_args(text, m.end()))
                    if m.group(1) == "msg":
                        level = LEVEL_OF_MSG.get(args[0], "info or warning")
                        fmt = literal(args[1]) if len(args) > 1 else None
                    else:
                        level = LEVEL[m.group(1)]
                        fmt = literal(args[0])
                    if fmt is None or (rel, fmt) in SKIP:
                        continue
                    line = text.count("\n", 0, m.start()) + 1
                    yield rel, line, level, shape(fmt)


def mdoc_text(s):
    """s as a mdoc text line: backslashes escaped, never a request, no
    sentence end inside (mandoc wants those at a line's end)."""
    s = s.replace("\\", "\\e")
    for end in ".?!":
        s = s.replace(end + " ", end + "\\& ")
    return "\\&" + s


def mdoc_untext(s):
    """The shape a mdoc_text() line shows."""
    s = s[2:]
    for end in ".?!":
        s = s.replace(end + "\\& ", end + " ")
    return s.replace("\\e", "\\")


def page_shapes(page):
    """The shapes the page lists, unescaped."""
    out = set()
    for ln in page.splitlines():
        if ln.startswith("\\&"):
            out.add(mdoc_untext(ln))
    return out


def main(argv):
    srcdir = argv[1] if len(argv) > 1 else "."
    show_all = "--all" in argv
    page_path = os.path.join(srcdir, "etc", "man", "etrnd-log.7")
    try:
        with open(page_path, encoding="utf-8") as f:
            have = page_shapes(f.read())
    except OSError:
        have = set()
    last = None
    missing = 0
    for rel, line, level, shp in calls(srcdir):
        if not show_all and shp in have:
            continue
        missing += 1
        if rel != last:
            print(".\\\" %s" % rel)
            last = rel
        print(".It Sy %s" % level)
        print(mdoc_text(shp))
    return 1 if missing and not show_all else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
