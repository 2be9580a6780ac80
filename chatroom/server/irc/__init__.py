"""The IRC port: IRC clients as ordinary chatroom users (issue in progress: lines and names so far)."""
