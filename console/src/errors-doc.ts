// The error codes of docs/errors.md, built into the console (so "what to do" works with no
// network): every table row `| \`CODE\` | what happened | what to do |` of that page.
import errorsMarkdown from '../../docs/errors.md?raw';

export interface ErrorDoc {
  code: string;
  section: string;
  what: string;
  todo: string;
}

function plain(cell: string): string {
  return cell.replace(/\[([^\]]+)\]\([^)]+\)/g, '$1').trim();
}

export const errorDocs: ErrorDoc[] = (() => {
  const rows: ErrorDoc[] = [];
  let section = '';
  for (const line of errorsMarkdown.split('\n')) {
    const heading = /^#{2,4}\s+(.+)$/.exec(line);
    if (heading) section = heading[1] as string;
    const row = /^\|\s*`([A-Z0-9_]+)`\s*\|(.*)\|(.*)\|\s*$/.exec(line);
    if (row) rows.push({ code: row[1] as string, section, what: plain(row[2] as string), todo: plain(row[3] as string) });
  }
  return rows;
})();

export function errorDoc(code: string): ErrorDoc | undefined {
  return errorDocs.find((d) => d.code === code);
}
