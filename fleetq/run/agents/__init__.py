"""Agents are data: an argv template (or an HTTP endpoint) per agent, no code per agent.

Import from the modules (nothing is re-exported here):

* :mod:`fleetq.run.agents.registry`  the built-in agents, ``config/agents.yaml`` overlaid and validated,
  which agents are installed here;
* :mod:`fleetq.run.agents.argv`      an agent's argv template filled in;
* :mod:`fleetq.run.agents.replies`   an agent's output read as a reply and its usage;
* :mod:`fleetq.run.agents.limits`    when a usage limit resets, and how long a limited task waits;
* :mod:`fleetq.run.agents.diagnose`  what a failed run means: a person must act, a limit, or a failure;
* :mod:`fleetq.run.agents.runners`   running an agent: a command line (cli) or a chat-completions API (http).

See docs/design.md, "Running tasks".
"""
