#!/usr/bin/env bash
# Draws the app icon and the four tray states as RGBA PNGs with ImageMagick (no fonts needed).
# Re-run after changing a colour: bash icons/generate.sh
set -euo pipefail
cd "$(dirname "$0")"
convert=/usr/bin/convert
[ -x "$convert" ] || convert=convert

# App icon: an indigo rounded square with a white check mark (a plan awaiting approval).
app() {
  local size=$1 out=$2
  "$convert" -size 512x512 xc:none \
    -fill '#4f46e5' -draw 'roundrectangle 24,24 488,488 96,96' \
    -stroke white -strokewidth 56 -fill none -draw 'stroke-linecap round stroke-linejoin round polyline 140,270 220,350 380,180' \
    -resize "${size}x${size}" -define png:color-type=6 "PNG32:$out"
}
app 32 32x32.png
app 128 128x128.png
app 256 128x128@2x.png
app 512 icon.png

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
