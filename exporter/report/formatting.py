"""How sizes and durations are shown, in `doit status` and the gallery alike."""

MADE = ("exported", "stale")    # statuses whose video exists


def format_size(size_bytes):
    """Decimal units, as upload limits are stated: 37497578 -> '37.5 MB'."""
    size = float(size_bytes or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def format_duration(seconds):
    """40.0 -> '40.0 s', 125 -> '2m05s', 3725 -> '1h02m05s'."""
    seconds = float(seconds or 0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def ffmpeg_release(version_line):
    """`ffmpeg -version`'s first line -> what a person needs: 'ffmpeg version n9.0.2-17-g2a5
    Copyright (c) 2000-2026 the FFmpeg developers' -> 'ffmpeg n9.0.2-17-g2a5'."""
    words = (version_line or "").split()
    if len(words) >= 3 and words[:2] == ["ffmpeg", "version"]:
        return f"ffmpeg {words[2]}"
    return version_line


# What each IPTC digital source type a manifest states reads as.
SOURCE_TYPE_WORDS = {"trainedAlgorithmicMedia": "AI-generated",
                     "compositeWithTrainedAlgorithmicMedia": "partly AI-generated"}


def credentials_text(facts):
    """An export's content credentials in words (records.credentials_facts): 'AI-generated;
    transcoded, resized; signed by Studio (C2PA)', or 'none' when it carries none."""
    if not facts:
        return "none"
    source = (facts.get("digital_source_type") or "").rsplit("/", 1)[-1]
    claim = SOURCE_TYPE_WORDS.get(source, f"source {source}" if source else "no AI claim")
    did = ", ".join(action.removeprefix("c2pa.") for action in facts.get("actions") or []
                    if action not in ("c2pa.created", "c2pa.opened"))
    parent = ""
    if facts.get("parent"):
        parent = f"; from {facts['parent']}" + (" (its own manifest kept)"
                                                if facts.get("parent_has_manifest") else "")
    return f"{claim}; {did}{parent}; signed by {facts.get('signer')}"
