// Package names is the vocabulary of file names in the basefs mount, parsed once for the
// file system (package fs) and for its clients (the agent, the in-use scan):
//
//   - `<ref>` names an image, `<ref>_<N>` its resized view (the image zero-extended to N GiB,
//     nova's name for a resized base), N a canonical decimal from 1 to 1 PiB/GiB;
//   - ref is a 64-hex image digest, or a 40-hex nova name (the SHA-1 of a Glance image id);
//   - every other name belongs to the mount's writable area (plain files).
package names
