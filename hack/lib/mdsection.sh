# shellcheck shell=bash
# Generated sections inside a Markdown file that another script regenerates.
# A section is the text between two HTML comment lines:
#
#   <!-- begin NAME -->
#   ...
#   <!-- end NAME -->
#
# hack/bench.sh rewrites docs/PERFORMANCE.md as a whole but carries such
# sections over (md_section_get); the script that owns a section replaces it
# in place (md_section_put), so each script can be rerun alone.

# md_section_get FILE NAME: print the section, markers included; nothing
# when FILE or the section does not exist.
md_section_get() {
	[[ -f $1 ]] || return 0
	awk -v b="<!-- begin $2 -->" -v e="<!-- end $2 -->" '
		$0 == b {f = 1}
		f {print}
		$0 == e {f = 0}' "$1"
}

# md_section_put FILE NAME BODY-FILE [BEFORE]: replace the section NAME in FILE
# with the contents of BODY-FILE (markers added here). Without that section,
# insert it before the first line equal to BEFORE, or append it at the end.
md_section_put() {
	local file=$1 name=$2 body=$3 before=${4:-}
	local tmp=$file.section.new
	[[ -f $file ]] || : >"$file"
	awk -v b="<!-- begin $name -->" -v e="<!-- end $name -->" -v before="$before" -v body="$body" '
		function emit(  line) {
			print b
			while ((getline line < body) > 0) print line
			close(body)
			print e
			done = 1
		}
		$0 == b {skip = 1; if (!done) emit(); next}
		skip {if ($0 == e) skip = 0; next}
		!done && before != "" && $0 == before {emit(); print ""}
		{print}
		END {if (!done) {print ""; emit()}}' "$file" >"$tmp"
	mv "$tmp" "$file"
}
