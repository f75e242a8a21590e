// The demo's Vite entry: every component in ./components/ can be used as
// {% flow_component "FileNameWithoutExtension" handle %}.
import { mountFlowComponents } from "caravela_flow/svelte_mount.svelte.js";

mountFlowComponents(import.meta.glob("./components/*.svelte", { eager: true }));
