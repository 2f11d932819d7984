"""Make Superset's users and the viewer role match the env file. Idempotent.

Runs in Superset's own venv (`lakehouse.stack.services.superset.ensure_users`) when
`lakehouse up` starts Superset (or `.env` changed), after `superset init` (the compose image runs it at start):
  - LAKEHOUSE_SUPERSET_ADMIN_USER: role Admin, password from the env file;
  - LAKEHOUSE_SUPERSET_VIEWER_USER: roles Gamma + LakehouseViewer, where LakehouseViewer
    holds `all_datasource_access`. This Superset has one database, the lakehouse marts, and
    Trino's rules let Superset's connection read nothing else; granting it by name would
    have to wait for the import. Gamma reads dashboards and charts; it has no write
    permission on them and no SQL Lab.
Prints one line per change. Never deletes a user.
"""

from __future__ import annotations

import os

from superset.app import create_app

VIEWER_ROLE = "LakehouseViewer"

app = create_app()
with app.app_context():
    from superset import db, security_manager as sm

    def upsert(username: str, password: str, roles: list) -> None:
        user = sm.find_user(username=username)
        if user is None:
            sm.add_user(username, username, "lakehouse", f"{username}@lakehouse.invalid", roles,
                        password=password)
            print(f"created user {username} ({', '.join(r.name for r in roles)})")
            return
        user.roles = roles
        user.active = True
        db.session.commit()
        sm.reset_password(user.id, password)
        print(f"updated user {username}")

    viewer_role = sm.find_role(VIEWER_ROLE) or sm.add_role(VIEWER_ROLE)
    sm.add_permission_role(viewer_role, sm.add_permission_view_menu("all_datasource_access",
                                                                    "all_datasource_access"))
    db.session.commit()

    upsert(os.environ["LAKEHOUSE_SUPERSET_ADMIN_USER"], os.environ["LAKEHOUSE_SUPERSET_ADMIN_PASSWORD"],
           [sm.find_role("Admin")])
    upsert(os.environ["LAKEHOUSE_SUPERSET_VIEWER_USER"], os.environ["LAKEHOUSE_SUPERSET_VIEWER_PASSWORD"],
           [sm.find_role("Gamma"), viewer_role])
