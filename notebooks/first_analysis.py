# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # First analysis: leads per category per day
#
# Runs on the **local warehouse** (after `make run`, or `letgo warehouse sync` on a running stage) and on
# **JupyterHub against Redshift**: the SQL is Redshift SQL on both sides (locally it is translated to DuckDB),
# and the connection is a DB-API connection on both sides. Only the connection line differs.
#
# Open it as a notebook in VS Code (the `# %%` cells) or in JupyterLab with jupytext ("Open With → Notebook");
# run it top to bottom as a script with `python notebooks/first_analysis.py`. `make test` runs it that way
# (tests/functional/test_warehouse_notebook.py), so it cannot rot.

# %%
import getpass
import os
from pathlib import Path

DAYS = int(os.environ.get("LETGO_NOTEBOOK_DAYS", "14"))  # how far back to look
OUT = Path(os.environ.get("LETGO_NOTEBOOK_OUT", "reports"))  # where the chart and the table are written


def redshift():
    """Redshift from JupyterHub: IAM credentials as notebook_<you> in the data_science group (the jupyterhub
    layer sets these variables and lets its role ask for exactly these credentials)."""
    import redshift_connector

    return redshift_connector.connect(
        iam=True, cluster_identifier=os.environ["REDSHIFT_CLUSTER_ID"], database=os.environ["REDSHIFT_DATABASE"],
        db_user=os.environ["REDSHIFT_DB_USER_PREFIX"] + getpass.getuser(), db_groups=[os.environ["REDSHIFT_DB_GROUP"]],
        auto_create=False, region=os.environ.get("AWS_DEFAULT_REGION"))


def local_warehouse():
    """This machine: DuckDB over the folder `make run` or `letgo warehouse sync` filled (default .local/warehouse)."""
    from letgo.warehouse.dbapi import connect

    return connect(os.environ.get("LETGO_WAREHOUSE_DIR"))


# %% [markdown]
# ## The connection — the one line that differs
# JupyterHub sets `REDSHIFT_CLUSTER_ID`, so this line picks Redshift there and the local warehouse here.
# To force one side, write `conn = redshift()` or `conn = local_warehouse()`.

# %%
conn = redshift() if os.environ.get("REDSHIFT_CLUSTER_ID") else local_warehouse()

# %% [markdown]
# ## Leads per category per day (Redshift SQL)

# %%
SQL = f"""
SELECT TRUNC(event_time) AS day, category, COUNT(*) AS leads
FROM analytics.lead
WHERE event_time >= DATEADD(day, -{DAYS}, TRUNC(GETDATE()))
GROUP BY 1, 2
ORDER BY 1, 2
"""
cursor = conn.cursor()
cursor.execute(SQL)
columns = [column[0] for column in cursor.description]
rows = cursor.fetchall()
print(f"{len(rows)} rows: {', '.join(columns)}")

# %%
days = sorted({day for day, _, _ in rows})
totals: dict[str, int] = {}
for _, category, leads in rows:
    totals[category] = totals.get(category, 0) + leads
categories = sorted(totals, key=lambda name: (-totals[name], name))
leads_by = {(day, category): leads for day, category, leads in rows}
print(f"{'category':<20}{'leads':>8}")
for category in categories:
    print(f"{category:<20}{totals[category]:>8,}")

# %% [markdown]
# ## The chart: one bar per day, stacked by category (the top 8; the rest as "other")

# %%
from matplotlib.figure import Figure  # noqa: E402 (a notebook imports where it needs)

top = categories[:8]
series = {category: [leads_by.get((day, category), 0) for day in days] for category in top}
if len(categories) > len(top):
    series["other"] = [sum(leads_by.get((day, c), 0) for c in categories[len(top):]) for day in days]
figure = Figure(figsize=(10, 5))
axes = figure.subplots()
bottom = [0] * len(days)
labels = [str(day) for day in days]
for category, values in series.items():
    axes.bar(labels, values, bottom=bottom, label=category)
    bottom = [b + v for b, v in zip(bottom, values)]
axes.set_title(f"Leads per category per day (last {DAYS} days)")
axes.set_ylabel("leads")
axes.tick_params(axis="x", labelrotation=45)
if series:
    axes.legend(fontsize="small", ncols=3)
figure.tight_layout()
figure  # noqa: B018 (the cell's value: a notebook shows the chart here)

# %%
OUT.mkdir(parents=True, exist_ok=True)
chart = OUT / "leads_per_category_per_day.png"
figure.savefig(chart)
table = OUT / "leads_per_category_per_day.csv"
table.write_text("day,category,leads\n" + "".join(f"{day},{category},{leads}\n" for day, category, leads in rows))
print(f"chart: {chart}\ntable: {table}")
conn.close()
