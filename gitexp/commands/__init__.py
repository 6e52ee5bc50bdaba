"""One module per subcommand group; each only parses arguments, calls the core, prints."""
