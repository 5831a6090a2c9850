"""The GitOps agent: `provision pull` keeps a host on the inventory at the tip of a git branch.

    git.py      the private repository: fetch, ancestry, SSH signatures, a commit's files
    record.py   what the agent knows (atomic JSON) and the pure decision about a commit
    agent.py    one run, the loop, and the records `provision status` shows
"""
