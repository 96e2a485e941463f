"""The page the built-in echo server shows at ``/``: it connects back and echoes."""

ECHO_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsuv echo</title>
<style>body{font:16px system-ui,sans-serif;margin:2em;max-width:40em}
#log{white-space:pre-wrap;border:1px solid #ccc;padding:.5em;min-height:6em}</style></head>
<body><h1>wsuv echo</h1>
<p>This page opened a WebSocket to the server that sent it and echoes what you type.</p>
<form id="f"><input id="msg" value="hello wsuv" autocomplete="off">
<button>Send</button></form>
<p>Status: <span id="status">connecting</span></p><div id="log"></div>
<script>
const log = (t) => { document.getElementById('log').textContent += t + '\\n'; };
const status = document.getElementById('status');
const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';
const ws = new WebSocket(url);
ws.onopen = () => { status.textContent = 'open'; ws.send('hello wsuv'); log('> hello wsuv'); };
ws.onmessage = (e) => {
  log('< ' + e.data);
  if (e.data === 'hello wsuv') status.textContent = 'echo ok';
};
ws.onclose = (e) => { status.textContent = 'closed (' + e.code + ')'; };
ws.onerror = () => { status.textContent = 'error'; };
document.getElementById('f').onsubmit = (e) => {
  e.preventDefault(); const v = document.getElementById('msg').value; ws.send(v); log('> ' + v);
};
</script></body></html>
"""
