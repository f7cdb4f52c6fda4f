"""Fields of one specimen: grain results of several images (or frames) added one by one
and pooled with the E112 field statistics (:func:`microseg.astm.pooled_summary`).

E112 asks for several fields chosen at random over the specimen; the 95 % confidence
interval of G then comes from the field-to-field variation, which one image cannot show.

Session state used: ``grain_fields`` (a list of field entries; kept when another image
is opened, since that is how fields are collected). The fields are also saved in the
workspace, so a refresh or a restart keeps them.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from microseg.errors import InputError
from webui import state

MIN_FIELDS = 5  # E112: at least five fields for a meaningful confidence interval
TABLE_COLUMNS = ("touches_border", "area_px", "ecd_px", "area_um2", "ecd_um")


def field_entry(result: dict) -> dict:
    """What a specimen keeps of a grain result: names, summary and the size columns."""
    ps = result["pixel_size"]
    if not ps:
        raise InputError(
            "A field needs its pixel size: type it in or use a scale bar (sidebar) first."
        )
    table = result["table"]
    cols = [c for c in TABLE_COLUMNS if c in table.columns]
    return {
        "image_id": state.get("workspace_image"),
        "image": result.get("image_name") or "image",
        "frame": int(result["t"]),
        "slice": int(result["z"]),
        "model": result["model_label"],
        "corrections": len(result.get("edits", [])),
        "pixel_size": float(ps),
        "summary": dict(result["summary"]),
        "table": table[cols].copy(),
    }


def add_field(fields: list[dict], entry: dict) -> tuple[list[dict], bool]:
    """``fields`` with ``entry`` added; a field of the same image plane is replaced
    (returns True then)."""
    same = [i for i, f in enumerate(fields)
            if (f["image"], f["frame"], f["slice"]) == (entry["image"], entry["frame"],
                                                        entry["slice"])]  # fmt: skip
    out = list(fields)
    if same:
        out[same[0]] = entry
        return out, True
    return out + [entry], False


def fields_table(fields: list[dict]) -> pd.DataFrame:
    """One row per field: image, model, pixel size, grains, N_A, mean intercept and G."""
    rows = []
    for i, f in enumerate(fields, start=1):
        s = f["summary"]
        rows.append({
            "field": i,
            "image": f["image"] + (f" (frame {f['frame']})" if f["frame"] else "")
            + (f" (slice {f['slice']})" if f["slice"] else ""),
            "model": f["model"] + (f", {f['corrections']} correction(s)" if f["corrections"]
                                   else ""),
            "pixel size (µm/px)": f["pixel_size"],
            "grains": s.get("n_grains"),
            "N_A (grains/mm²)": s.get("n_a"),
            "mean intercept (µm)": s.get("mean_intercept"),
            "G planimetric": s.get("astm_g_planimetric"),
            "G intercept": s.get("astm_g_intercept"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def specimen_summary(fields: list[dict]) -> dict:
    """The pooled summary of the fields (sizes in µm; G with its field-to-field 95 % CI),
    see :func:`microseg.astm.specimen_summary`."""
    from microseg.astm import specimen_summary as pooled

    return pooled([(f["image"], f["summary"], f["table"], f["pixel_size"]) for f in fields])


def _record(entry: dict) -> dict:
    """A field as a JSON dict for the workspace."""
    from microseg.io import jsonable

    rec = {k: v for k, v in entry.items() if k != "table"}
    rec["sizes"] = {c: entry["table"][c].tolist() for c in entry["table"].columns}
    return jsonable(rec)


def _entry(record: dict) -> dict | None:
    """A field from its workspace record (None when it is not one)."""
    try:
        entry = {k: v for k, v in record.items() if k != "sizes"}
        entry["table"] = pd.DataFrame(record["sizes"])
        entry["pixel_size"] = float(entry["pixel_size"])
        entry["frame"], entry["slice"] = int(entry["frame"]), int(entry["slice"])
        if not isinstance(entry["summary"], dict) or not str(entry["image"]):
            return None
        return entry
    except (KeyError, TypeError, ValueError):
        return None


def current_fields() -> list[dict]:
    """The specimen's fields: those of this session, else those saved in the workspace."""
    fields = state.get("grain_fields")
    if fields is None:
        from webui import workspace

        saved = workspace.load_specimen_fields() or []
        fields = [e for e in (_entry(r) for r in saved) if e is not None]
        state.put("grain_fields", fields)
    return fields


def set_fields(fields: list[dict]) -> None:
    """Make ``fields`` the specimen's fields, in the session and in the workspace."""
    from webui import workspace

    state.put("grain_fields", fields)
    workspace.save_specimen_fields([_record(f) for f in fields])


def specimen_json(fields: list[dict]) -> bytes:
    """The specimen summary and its fields as JSON."""
    from microseg import __version__
    from microseg.io import jsonable

    rec = {
        "microseg_version": __version__,
        "specimen": specimen_summary(fields),
        "fields": fields_table(fields).to_dict(orient="records"),
    }
    return json.dumps(jsonable(rec), indent=1).encode()


def specimen_panel(result: dict) -> None:
    """Add the current grain result as a field, list the fields and show the pooled G."""
    fields = current_fields()
    # keyed: stays open when the page above it changes (pixel size, grain count)
    with st.expander(
        "Specimen: several fields", expanded=bool(fields), key="grains_specimen_panel"
    ):
        st.caption(
            "ASTM E112 measures several fields chosen at random over the specimen (at least "
            f"{MIN_FIELDS}); G and its 95 % CI then come from the field-to-field variation. "
            "Add this grain map as a field, open the next micrograph, and add it too."
        )
        c1, c2 = st.columns([1, 1])
        if c1.button("Add this grain map as a field", key="grains_field_add", type="primary"):
            try:
                new, replaced = add_field(fields, field_entry(result))
            except InputError as exc:
                st.error(str(exc))
            else:
                set_fields(new)
                fields = new
                name = result.get("image_name") or "image"
                st.success(f"Replaced the field of {name}." if replaced
                           else f"Added field {len(new)}: {name}.")  # fmt: skip
        if fields and c2.button("Remove all fields", key="grains_field_clear"):
            set_fields([])
            fields = []
        if not fields:
            return
        df = fields_table(fields)
        st.dataframe(df.round(4), hide_index=True, key="grains_fields_table")
        drop = st.selectbox("Remove a field", [0, *df["field"]], key="grains_field_drop",
                            format_func=lambda i: "—" if i == 0 else f"field {i}")  # fmt: skip
        if drop:
            set_fields([f for i, f in enumerate(fields, 1) if i != drop])
            st.session_state.pop("grains_field_drop", None)
            st.rerun()
        try:
            spec = specimen_summary(fields)
        except Exception as exc:  # noqa: BLE001 - one sentence, never a traceback
            st.error(f"The specimen summary failed ({type(exc).__name__}).")
            return
        _specimen_metrics(spec, len(fields))
        st.download_button("Fields and specimen summary (JSON)", lambda: specimen_json(fields),
                           "specimen_grains.json", "application/json",
                           key="grains_fields_json")  # fmt: skip
        st.download_button("Fields (CSV)", lambda: fields_table(fields).to_csv(index=False),
                           "specimen_fields.csv", "text/csv", key="grains_fields_csv")  # fmt: skip


def _specimen_metrics(spec: dict, n: int) -> None:
    c = st.columns(4)
    c[0].metric("Fields", str(n))
    c[1].metric("Grains in all fields", str(spec.get("n_grains")))
    for col, key, name in ((c[2], "astm_g_planimetric", "Specimen G planimetric"),
                           (c[3], "astm_g_intercept", "Specimen G intercept")):  # fmt: skip
        g = spec.get(key)
        col.metric(name, "—" if g is None else f"{g:.2f}")
        ci = spec.get(f"{key}_ci") or [None, None]
        if g is not None and None not in ci:
            col.caption(f"95 % CI {ci[0]:.2f} – {ci[1]:.2f} (field to field)")
        elif g is not None and n >= 2:
            col.caption("95 % CI: the fields differ too much to bound G")
    ra = [spec.get(k) for k in ("planimetric_rel_accuracy_pct", "intercept_rel_accuracy_pct")]
    if n < 2:
        st.caption("One field: G without a confidence interval; add more fields.")
    elif n < MIN_FIELDS:
        st.caption(f"{n} fields: E112 asks for at least {MIN_FIELDS}.")
    if any(r is not None for r in ra):
        txt = " / ".join("—" if r is None else f"{r:.1f} %" for r in ra)
        st.caption(f"Relative accuracy (planimetric / intercept): {txt}; E112 considers "
                   "10 % or less acceptable.")  # fmt: skip
