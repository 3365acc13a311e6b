"""The fleet: make rollout, make rollback and make fleet-status over an Ansible inventory of boards.

Ansible (ansible-core) does the work on the boards: its inventory is the fleet, its `serial` the canary and the
batches, its block/rescue the way back; the playbooks and the board's script live in playbooks/ and files/. The
boards need nothing but Python and the bundle's own requirements. Host side only.
"""
