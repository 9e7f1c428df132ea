"""Where the bytes live: the renders and the exports are each a store, a directory or a
bucket (s3://), chosen once at load (`renders_store`, `exports_store`). No module outside
this package asks whether a root is a bucket."""
