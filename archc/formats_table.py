"""`archc formats`: the formats of a design (or of std.formats) with their range, precision and
the cost model's MAC energy and area, and throughput at equal silicon relative to fp64."""
from __future__ import annotations


from archc.dsl import costs
from archc.dsl.ir import Format


def default_acc(f: Format, formats: dict) -> str | None:
    """The accumulator a unit of this format would usually use."""
    if f.kind == "posit":
        return f.name
    if f.kind in ("int", "fixed"):
        return "int32" if "int32" in formats else None
    if f.kind == "float" and f.bits >= 64:
        return f.name
    return "fp32" if "fp32" in formats else None


def table(formats: dict[str, Format], node_nm: float) -> str:
    ref = formats.get("fp64")
    ref_area = costs.mac(ref, ref, ref, node_nm, formats=formats).area_m2 if ref else None
    head = (f"{'format':<12} {'kind':<6} {'bits':>4}  {'max':>10} {'min normal':>10} {'eps':>9}  "
            f"{'MAC (acc)':<20} {'pJ/MAC':>7} {'um2/MAC':>8} {'vs fp64':>8}")
    lines = [f"formats at {node_nm:g} nm (cost model anchored to Horowitz, ISSCC 2014, 45 nm)", head]
    for name in sorted(formats):
        f = formats[name]
        acc = default_acc(f, formats)
        rng = "", "", ""
        try:
            from archc.codegen.numerics import infos
            i = infos({name: f} | ({f.param("elem"): formats[f.param("elem")]} if f.kind == "mx" else {}))
            info = i.get(name) or i.get(f.param("elem"))
            if info:
                rng = (f"{info.max:.3g}", f"{info.min_normal:.3g}", f"{info.eps:.3g}")
        except Exception:
            pass
        cost = ""
        if acc:
            try:
                c = costs.mac(f, f, formats[acc], node_nm, formats=formats)
                ratio = f"{ref_area / c.area_m2:.1f}x" if ref_area else ""
                cost = f"{name + ' -> ' + acc:<20} {c.energy_j * 1e12:>7.3f} {c.area_m2 * 1e12:>8.1f} {ratio:>8}"
            except ValueError:
                cost = ""
        lines.append(f"{name:<12} {f.kind:<6} {f.bits:>4}  {rng[0]:>10} {rng[1]:>10} {rng[2]:>9}  {cost}")
    return "\n".join(lines) + "\n"
