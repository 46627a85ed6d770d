"""System-wide nbgrader configuration of the class hub (setup.sh installs it in the environment's
etc/jupyter, where every user's server reads it).

Students and instructors share one exchange (root-owned, 1777 as nbgrader requires); every
course's folder in it is pre-created by courses.py with its grader account as owner, so a student
cannot squat a course id of the site. Which courses a user sees comes from the hub's
groups nbgrader-<course> (students) and formgrade-<course> (instructors, graders), through
nbgrader's JupyterHub authenticator.
"""

import os

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.Exchange.root = os.environ.get("TDL_EXCHANGE", "/srv/nbgrader/exchange")
c.Exchange.path_includes_course = True
c.Authenticator.plugin_class = "nbgrader.auth.JupyterHubAuthPlugin"
