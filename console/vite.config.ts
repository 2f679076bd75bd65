// Builds the web console into console/dist (served by vcbt serve, src/api/console.ts): one
// hashed script and one stylesheet under assets/, no inline script (the server's
// Content-Security-Policy forbids it), nothing loaded from another origin.
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
  },
  server: { fs: { allow: ['..'] } },
});
