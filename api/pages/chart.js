// A grouped bar chart drawn as inline SVG: two bars (demand, seats) per category.
import { svg, fmtNumber } from "./common.js";

/** A "nice" axis maximum and step for counts up to max: whole-number steps of 1, 2 or 5 times a power of ten. */
export function niceScale(max) {
  if (!(max > 0)) return { top: 1, step: 1 };
  const rough = max / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || 10 * power);
  return { top: Math.ceil(max / step) * step, step };
}

/**
 * Draws the chart into container. rows: [{label, demand, seats}] (seats may be null: unknown).
 * names: {title, demand, seats}. The SVG is an image with a text alternative; the same
 * numbers are also in a table next to it. id prefixes the ids of its title and description,
 * so that a page may hold several charts.
 */
export function barChart(container, rows, names, id = "chart") {
  const barW = 14;
  const gap = 4;
  // Wide enough for the longest label (about 7 px a character at 12 px) when labels stand upright.
  const longest = Math.max(0, ...rows.map((r) => String(r.label).length));
  const groupW = Math.max(barW * 2 + gap + 18, rows.length > 14 ? 0 : longest * 7 + 10);
  const left = 48;
  const right = 12;
  const top = 12;
  const plotH = 220;
  const labelH = rows.length > 14 ? 64 : 36;
  const width = Math.max(360, left + right + groupW * rows.length);
  const height = top + plotH + labelH;
  const max = Math.max(0, ...rows.map((r) => Math.max(r.demand || 0, r.seats || 0)));
  const { top: yMax, step } = niceScale(max);
  const y = (v) => top + plotH - (v / yMax) * plotH;

  const desc = rows
    .map((r) => `${r.label}: ${fmtNumber(r.demand)} / ${r.seats == null ? "?" : fmtNumber(r.seats)}`)
    .join("; ");
  const chart = svg(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-labelledby": `${id}-svg-title ${id}-svg-desc`,
    },
    svg("title", { id: `${id}-svg-title`, text: names.title }),
    svg("desc", { id: `${id}-svg-desc`, text: `${names.demand} / ${names.seats}. ${desc}` }),
  );

  for (let v = 0; v <= yMax + 1e-9; v += step) {
    chart.append(
      svg("line", { class: "grid-line", x1: left, x2: width - right, y1: y(v), y2: y(v) }),
      svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", text: fmtNumber(Math.round(v)) }),
    );
  }
  chart.append(svg("line", { class: "axis", x1: left, x2: width - right, y1: y(0), y2: y(0) }));

  rows.forEach((r, i) => {
    const x0 = left + i * groupW + (groupW - (barW * 2 + gap)) / 2;
    const group = svg("g", { "data-institution": r.label, "data-label": r.label });
    const demandH = y(0) - y(r.demand || 0);
    group.append(
      svg(
        "rect",
        { class: "demand", x: x0, y: y(r.demand || 0), width: barW, height: Math.max(demandH, 0.5) },
        svg("title", { text: `${r.label} — ${names.demand}: ${fmtNumber(r.demand || 0)}` }),
      ),
    );
    if (r.seats != null) {
      const seatsH = y(0) - y(r.seats);
      group.append(
        svg(
          "rect",
          { class: "seats", x: x0 + barW + gap, y: y(r.seats), width: barW, height: Math.max(seatsH, 0.5) },
          svg("title", { text: `${r.label} — ${names.seats}: ${fmtNumber(r.seats)}` }),
        ),
      );
    }
    const cx = x0 + barW + gap / 2;
    const ly = y(0) + 14;
    group.append(
      rows.length > 14
        ? svg("text", { x: cx, y: ly, "text-anchor": "end", transform: `rotate(-45 ${cx} ${ly})`, text: r.label })
        : svg("text", { x: cx, y: ly, "text-anchor": "middle", text: r.label }),
    );
    chart.append(group);
  });
  container.replaceChildren(chart);
}
