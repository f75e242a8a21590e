// Builds the demo's Svelte 5 components (demo_site/frontend/) for Django.
//
// `npm run build` (or `make js`) writes demo_site/frontend/dist/ with a
// manifest.json; Django serves that folder as static/vite/ and django-vite
// reads the manifest ({% vite_asset "demo_site/frontend/main.js" %}).
// Nothing here is compiled in the browser, and dist/ is never committed.
import { fileURLToPath } from "node:url";

import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vite";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  plugins: [svelte()],
  // Built files are served from STATIC_URL + "vite/" (DJANGO_VITE static_url_prefix).
  base: "/static/vite/",
  resolve: {
    alias: {
      // caravela_flow's static folder, so the entry can import its mount script.
      // With caravela_flow installed from PyPI, point this at the installed package:
      //   python -c "import caravela_flow, pathlib; print(pathlib.Path(caravela_flow.__file__).parent / 'static/caravela_flow')"
      caravela_flow: process.env.CARAVELA_FLOW_STATIC ?? here("./caravela_flow/static/caravela_flow"),
    },
  },
  build: {
    outDir: here("./demo_site/frontend/dist"),
    emptyOutDir: true,
    manifest: "manifest.json",
    rolldownOptions: {
      input: here("./demo_site/frontend/main.js"),
    },
  },
});
