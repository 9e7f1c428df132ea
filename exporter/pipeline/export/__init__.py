"""One export, the same code wherever its bytes live and wherever it runs: the loaded
library and its jobs, the export action, the encode, covers, outputs and the library stamp."""
