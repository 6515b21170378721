//! One module per plugin: its clap arguments and its `run`.
