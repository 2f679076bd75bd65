package main

// extraConfig as ESXi keeps it. vcsim's ReconfigVM appends every OptionValue it is given, so
// setting a key twice would list it twice; on ESXi a key that exists is replaced and an empty
// value removes it. The lab rewrites the list that way after every reconfiguration (keeping
// the first position of each key), so clients that store state in extraConfig read back one
// value per key.

import "github.com/vmware/govmomi/vim25/types"

// normalizeExtraConfig applies ESXi's replace/remove rules. Called with the VM locked.
func (lv *labVm) normalizeExtraConfig() {
	if lv.sim.Config == nil {
		return
	}
	index := map[string]int{}
	var out []types.BaseOptionValue
	changed := false
	for _, option := range lv.sim.Config.ExtraConfig {
		value := option.GetOptionValue()
		if i, seen := index[value.Key]; seen {
			out[i] = option
			changed = true
			continue
		}
		index[value.Key] = len(out)
		out = append(out, option)
	}
	kept := out[:0]
	for _, option := range out {
		if text, ok := option.GetOptionValue().Value.(string); ok && text == "" {
			changed = true
			continue
		}
		kept = append(kept, option)
	}
	if changed {
		lv.sim.Config.ExtraConfig = kept
	}
}
