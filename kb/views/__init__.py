"""Pages, one module per area. Views are thin: check the role's permission, read through a
selector or write through one service, render."""
