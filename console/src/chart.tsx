// Time-series charts drawn by uPlot (canvas). Each chart has a text alternative: a caption
// and a visually hidden table of the same numbers, so screen readers and the keyboard get
// them too. Colours come from the page's CSS variables, so dark mode applies.
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  /** One value per x, null for a gap. */
  values: Array<number | null>;
  /** CSS variable name of its colour, e.g. `--chart-1`. */
  colour: string;
  format: (value: number) => string;
  /** Draw as bars rather than a line. */
  bars?: boolean;
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

export function TimeChart({ caption, xs, series, height = 220 }: { caption: string; xs: number[]; series: Series[]; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  // Redrawn when the theme changes (the toggle, or the system's preference): colours are read once per drawing.
  const [themeTick, setThemeTick] = useState(0);
  useEffect(() => {
    const bump = () => setThemeTick((t) => t + 1);
    const scheme = matchMedia('(prefers-color-scheme: dark)');
    scheme.addEventListener('change', bump);
    addEventListener('vcbt-theme', bump);
    return () => {
      scheme.removeEventListener('change', bump);
      removeEventListener('vcbt-theme', bump);
    };
  }, []);
  useEffect(() => {
    const el = box.current;
    if (!el || xs.length === 0) return;
    const axisColour = cssVar('--fg-muted');
    const gridColour = cssVar('--border');
    const scales: uPlot.Scales = { x: { time: true } };
    const axes: uPlot.Axis[] = [{ stroke: axisColour, grid: { stroke: gridColour } }];
    series.forEach((s, i) => {
      scales[`y${i}`] = { auto: true, range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] };
      if (i < 2) axes.push({ scale: `y${i}`, side: i === 0 ? 3 : 1, stroke: axisColour, grid: { show: i === 0, stroke: gridColour }, values: (_u, ticks) => ticks.map((t) => s.format(t)), size: 80 });
    });
    const options: uPlot.Options = {
      width: el.clientWidth || 600,
      height,
      scales,
      axes,
      legend: { show: true },
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          scale: `y${i}`,
          stroke: cssVar(s.colour),
          fill: s.bars ? cssVar(s.colour) : undefined,
          width: 2,
          paths: s.bars ? uPlot.paths.bars?.({ size: [0.6, 40] }) : undefined,
          points: { show: xs.length < 50 },
          value: (_u: uPlot, v: number | null) => (v === null ? '—' : s.format(v)),
        })),
      ],
    };
    const plot = new uPlot(options, [xs, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    const resize = new ResizeObserver(() => plot.setSize({ width: el.clientWidth, height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [xs, series, height, themeTick]);
  return (
    <figure class="chart">
      <figcaption>{caption}</figcaption>
      {xs.length === 0 ? <p class="muted">Nothing to chart yet.</p> : <div ref={box} aria-hidden="true" />}
      <table class="visually-hidden">
        <caption>{caption}</caption>
        <thead>
          <tr>
            <th scope="col">time</th>
            {series.map((s) => (
              <th scope="col">{s.label}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {xs.map((x, i) => (
            <tr>
              <td>{new Date(x * 1000).toLocaleString()}</td>
              {series.map((s) => {
                const v = s.values[i];
                return <td>{v === null || v === undefined ? '—' : s.format(v)}</td>;
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
