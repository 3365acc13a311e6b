"""What leaves the host: the report and its gate's words, the bundle, pushing it to a board, capturing frames there."""
