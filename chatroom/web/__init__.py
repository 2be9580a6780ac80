"""The browser client's files (index.html, app.js, style.css), served by ``chatroom-server
--web``. No build step: what is here is what the browser runs."""
