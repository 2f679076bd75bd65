// Opening the catalog a configuration names (`catalog.path`): the one place that picks the
// store, so another implementation of catalog.ts plugs in here.
import type { CatalogConfig } from '../config.ts';
import type { Catalog } from './catalog.ts';
import { openSqliteCatalog } from './sqlite.ts';

export function openCatalog(config: CatalogConfig): Catalog {
  return openSqliteCatalog(config.path);
}
