"""The exports root's own files: one place that names them (registry, gallery, lock, stamp,
DB, caches), so no two modules can disagree and a segment may not take one of the names."""

REGISTRY = "registry.json"
HISTORY = "history.jsonl"     # append-only: never removed by clean or forget
HISTORY_INDEX = ".history-index.json"   # what the registry needs of it, read up to an offset
HISTORY_SYNCED = ".history-synced.json"  # exports=s3://...: the bucket's history merged last
GALLERY_PAGE = "index.html"
GALLERY_CACHE = ".gallery-cache.json"   # written by earlier versions: removed when found
VIEW_INDEX = ".view-index.json"     # where each title's bytes are in the registry and gallery
LOCK = ".lock"
STAMP = ".up-to-date.json"
PLATFORMS_CHECKED = ".platforms-checked.json"   # the platform files last validated
DEP_DB = ".doit.db"
SHARED_DIR = ".shared"
PROGRESS_DIR = ".progress"
RENDERS_MIRROR = ".renders"     # renders=s3://...: the bucket's titles, final.mp4 as a note
FETCHED_RENDERS = ".fetched"    # renders=s3://...: the renders being exported, downloaded
# The root's files written whole (by temporary and rename) under the tree's lock.
REWRITTEN_FILES = (REGISTRY, GALLERY_PAGE, GALLERY_CACHE, HISTORY_INDEX, STAMP, VIEW_INDEX)
# Names a segment directory may not take: they would collide with a file of the root.
VISIBLE_FILES = (REGISTRY, GALLERY_PAGE, HISTORY)


def task_name(platform: str, title_id: str) -> str:
    """The doit task of one export: 'youtube:my-story'."""
    return f"{platform}:{title_id}"


def title_id_of(task: str) -> str:
    """The title of an export's task name (task_name's inverse): 'my-story'."""
    return task.partition(":")[2]
