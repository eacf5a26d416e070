"""The auth service of the original system: checks a username and password and issues an HS256
token {"sub": user, "exp": now + 30 min} signed with JWT_SECRET_KEY. Demo users only."""
import datetime
import os

import jwt
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

JWT_SECRET_KEY = os.environ["JWT_SECRET_KEY"]
USERS = {"alice": "wonderland", "bob": "builder"}  # demo only: use a real user store

app = FastAPI(title="auth")


class Login(BaseModel):
    username: str
    password: str


@app.post("/auth/token")
def token(login: Login) -> dict:
    if USERS.get(login.username) != login.password:
        raise HTTPException(status_code=401, detail="bad username or password")
    exp = datetime.datetime.now(tz=datetime.timezone.utc) + datetime.timedelta(minutes=30)
    access_token = jwt.encode({"sub": login.username, "exp": exp}, JWT_SECRET_KEY, algorithm="HS256")
    return {"access_token": access_token, "token_type": "bearer"}
