// What the pages share for the session: the map's model (positions stay put between pages).
import {Model} from "./topology.js";

export const model = new Model();
