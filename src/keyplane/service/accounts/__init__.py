"""Organizations, projects, members, invitations, console sessions and who may do what."""
