// The suite is built for node >= 22; on node 20 its one import node 20 lacks
// (fs.globSync, used only by its tier-check command) would stop it loading. This hook
// gives the suite's "fs" import a module with every real export plus that one name.
import { register } from "node:module";

if (!("globSync" in (await import("node:fs")))) {
  register("./node20-hooks.mjs", import.meta.url);
}
