#!/usr/bin/env bash
# Renders the app icon in every size from its one source, icon.svg (rsvg-convert, package
# librsvg2-bin), and draws the four tray states as RGBA PNGs with ImageMagick (no fonts needed).
# The PNGs are committed, so a build needs neither tool. Re-run after changing a colour or the
# source: bash icons/generate.sh   (only the app icons: bash icons/generate.sh app)
set -euo pipefail
cd "$(dirname "$0")"

# App icon: the hicolor sizes the packages install (usr/share/icons/hicolor/NxN/apps); 32x32.png
# is also the window icon (the first PNG in tauri.conf.json's bundle.icon). 128x128@2x.png and
# icon.png are the names benches/hello-world's config uses (the create-tauri-app set).
for size in 16 32 48 64 128 256 512; do
  rsvg-convert --width "$size" --height "$size" icon.svg --output "${size}x${size}.png"
done
cp 256x256.png 128x128@2x.png
cp 512x512.png icon.png
[ "${1:-}" = app ] && exit 0

convert=/usr/bin/convert
[ -x "$convert" ] || convert=convert

# Tray states, 64x64 (the panel scales them): a check in a disc whose colour is the state,
# with a badge dot for pending/overdue and a bar for error, so they differ without colour too.
tray() {
  local out=$1 disc=$2 mark=$3
  local args=(-size 256x256 xc:none -fill "$disc" -draw 'circle 128,128 128,12')
  case $mark in
    check) args+=(-stroke white -strokewidth 30 -fill none -draw 'stroke-linecap round stroke-linejoin round polyline 74,132 112,170 184,96') ;;
    dot) args+=(-stroke white -strokewidth 30 -fill none -draw 'stroke-linecap round stroke-linejoin round polyline 64,140 100,176 164,108'
                -stroke "$disc" -strokewidth 14 -fill white -draw 'circle 198,58 198,14') ;;
    bang) args+=(-stroke none -fill white -draw 'roundrectangle 112,52 144,150 12,12' -draw 'circle 128,192 128,174') ;;
  esac
  "$convert" "${args[@]}" -resize 64x64 -define png:color-type=6 "PNG32:$out"
}
tray tray-idle.png '#6b7280' check
tray tray-pending.png '#d97706' dot
tray tray-overdue.png '#dc2626' dot
tray tray-error.png '#374151' bang
